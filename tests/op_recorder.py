"""Which aten kernels ran: for tests that check a layer took the kernel route it claims."""
from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class OpRecorder(TorchDispatchMode):
    """Records the names of the kernels that run inside the `with` block (`.names`, e.g. 'aten.mm.default')."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))
