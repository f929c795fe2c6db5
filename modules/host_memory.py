"""Freed host memory is kept for the next call instead of being handed back to the OS (Linux, glibc).

Each vocoder and DiT call allocates the same large CPU buffers again: BigVGAN-44k's stage tensors are 42-84 MB.
glibc serves a block above its mmap threshold (which adapts up to 32 MiB at most) with a fresh mmap() and unmaps
it on free, and it trims the top of the heap when enough is free there. The next call then page-faults every
page of its buffers in again, zeroed by the kernel: on the 2-core CI machine about a fifth of the vocoder's
time (10 s of 44.1 kHz audio: 24.4 s against 19.7 s with the heap kept).

With the policy on, every allocation is served from the heap and the heap is not trimmed, so buffers are
reused from call to call. Holes that small allocations leave in freed blocks can make the heap grow past what
is live, so the converter hands the free pages back with `return_freed_host_memory()` (malloc_trim) at the end
of every conversion: within one conversion its buffers are reused, between conversions the process shrinks
back. On the singing preset the peak RSS is within 0.1 GiB of the default allocator's.

Nothing is changed when SEEDVC_RELEASE_FREED_MEMORY=1 is set (glibc's default behaviour, for a process that
must stay small between calls at the price of speed) or when the environment sets glibc's malloc itself
(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt() parameters (malloc.h) and the largest value its int argument takes
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_ALL = 2 ** 31 - 1
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
OPT_OUT = "SEEDVC_RELEASE_FREED_MEMORY"

_applied: bool | None = None
_libc = None


def keep_freed_host_memory() -> bool:
    """Switch this process to the keep-and-reuse policy above, once. True when it is in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def return_freed_host_memory() -> None:
    """Hand the heap's free pages back to the OS (only while the policy is in effect; about 30 ms for a few
    hundred MB)."""
    if _applied:
        _libc.malloc_trim(0)


def _apply() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    opt_out = os.environ.get(OPT_OUT, "").strip().lower()
    if opt_out in ("1", "true", "yes"):
        log.info("host memory: %s=%s, freed memory is released as glibc does by default", OPT_OUT, opt_out)
        return False
    if opt_out not in ("", "0", "false", "no"):
        log.warning("host memory: %s=%r is not 1/true/yes or 0/false/no; freed memory is kept for reuse",
                    OPT_OUT, os.environ[OPT_OUT])
    if any(name in os.environ for name in USER_SETTINGS):
        log.info("host memory: the environment sets glibc malloc (%s); left as it is",
                 ", ".join(n for n in USER_SETTINGS if n in os.environ))
        return False
    global _libc
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # the mmap threshold first: setting either one stops glibc adapting both
    return bool(_libc.mallopt(M_MMAP_THRESHOLD, KEEP_ALL)) and bool(_libc.mallopt(M_TRIM_THRESHOLD, KEEP_ALL))
