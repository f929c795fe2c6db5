"""Runs at interpreter start when tests/sim_site is on PYTHONPATH: with SEEDVC_SIMULATED_DEVICE=cuda|mps set
(by `python tests/fake_device.py cuda SCRIPT ...`), this process and every Python child it starts run under
the simulated accelerator."""
import os

if os.environ.get("SEEDVC_SIMULATED_DEVICE"):
    import fake_device

    fake_device.activate(os.environ["SEEDVC_SIMULATED_DEVICE"])
