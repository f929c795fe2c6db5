#!/usr/bin/env bash
# One check on a machine with a GPU (under 8 minutes on one NVIDIA GPU):
#   1. make sure the packages are there (installs requirements-dev.txt only if something is missing),
#   2. run the device tests on the real device (tests/test_devices.py with SEEDVC_REAL_DEVICE=1: the
#      simulated-accelerator tests then run on the GPU itself) and the rest of the suite's fast device-free part,
#   3. print the end-to-end benchmark of the three presets at full size, fp16 on and off: seconds per stage
#      (the device synchronised before every clock read), RTF and torch.cuda.max_memory_allocated,
#   4. print the live engine's per-block compute and latency (benchmarks/bench_live.py).
#
#   bash benchmarks/device_check.sh                       # on the GPU machine: --device cuda, full size
#   bash benchmarks/device_check.sh --device cpu --quick  # the same steps on a CPU (2 s source, 2 steps)
#   ... --skip-tests                                      # the benchmark only
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
QUICK=0
TESTS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --skip-tests) TESTS=0; shift ;;
    *) echo "unknown argument: $1 (use --device cuda|cpu|mps, --quick, --skip-tests)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}
started=$(date +%s)
lap() { echo "== $1 ($(( $(date +%s) - started )) s so far)"; }

lap "packages"
# find_spec, not import: torchfcpe is installed without its torchaudio dependency and cannot be imported whole.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in
    ('torch', 'transformers', 'gradio', 'accelerate', 'librosa', 'soxr', 'pytest', 'spaces', 'torchfcpe')))"; then
  "$PY" -m pip install -q -r requirements-dev.txt
  "$PY" -m pip install -q --no-deps -r requirements-nodeps.txt
fi
"$PY" - "$DEVICE" <<'EOF'
import sys, torch
device = sys.argv[1]
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, device {device}")
if device == "cuda":
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible: install the CUDA build of torch (same version) or pass --device cpu")
    print("GPU:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF

if [ "$TESTS" = 1 ]; then
  lap "device tests on the real device"
  SEEDVC_REAL_DEVICE=1 timeout 300 "$PY" -m pytest -q -x tests/test_devices.py -p no:cacheprovider
fi

lap "end-to-end benchmark, full size, --device $DEVICE"
if [ "$QUICK" = 1 ]; then SIZE=(--seconds 2 --reference-seconds 1.5 --steps 2); else SIZE=(--seconds 10 --reference-seconds 5 --steps 10); fi
# fp16 on and off: fp32 always runs first as the reference of the error figures; fp16 exists on CUDA only.
PRECISIONS=(fp32); [ "$DEVICE" = cuda ] && PRECISIONS=(fp32 fp16)
timeout 600 "$PY" benchmarks/bench_e2e.py --device "$DEVICE" --precision "${PRECISIONS[@]}" --repeat 2 "${SIZE[@]}"
lap "live engine, XLS-R tiny + HiFT at full size, --device $DEVICE"
if [ "$QUICK" = 1 ]; then LIVE=(--blocks 0.3 --steps 4 --measure 1); else LIVE=(--blocks 0.18 0.3 0.5 --steps 4 10 --measure 4); fi
timeout 300 "$PY" benchmarks/bench_live.py --device "$DEVICE" "${LIVE[@]}"
lap "done"
