"""Keep freed CPU memory in the process instead of handing it back to the OS after every tensor.

PyTorch's CPU allocator is plain ``malloc``. glibc serves blocks above its mmap threshold
(128 KiB to 32 MiB, adaptive) with a fresh ``mmap`` and returns them with ``munmap`` on free, so
every large activation of a forward is page-faulted in (and zeroed by the kernel) again: at 512²
a cmgan forward took 1.3M page faults and about a quarter of its CPU time in the kernel (README,
"Benchmarks"). Raising the mmap and trim thresholds makes glibc keep and reuse the freed heap,
as PyTorch's CUDA caching allocator does on a GPU. The values computed are unchanged; the cost is
that the process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
RETAIN_BYTES = 2**31 - 1  # mallopt takes an int: allocations up to 2 GiB come from the reused heap
GLIBC_DEFAULT_BYTES = 128 * 1024


@functools.lru_cache(maxsize=1)
def _libc():
    """glibc's ``mallopt``, or None where the C library is not glibc (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 — glibc only; musl has a no-op mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def retention_supported() -> bool:
    return _libc() is not None


def retain_freed_memory(enabled: bool = True) -> bool:
    """Process-wide: make glibc keep freed blocks for reuse (``enabled``) or restore its default
    thresholds (128 KiB; the adaptive threshold stays off once set). Returns whether it applied."""
    mallopt = _libc()
    if mallopt is None:
        return False
    value = RETAIN_BYTES if enabled else GLIBC_DEFAULT_BYTES
    return bool(mallopt(M_MMAP_THRESHOLD, value)) and bool(mallopt(M_TRIM_THRESHOLD, value))
