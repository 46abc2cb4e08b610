"""llmkit/heap.py: freed C-heap pages go back to the system."""

import ctypes
import sys

import pytest

from llmkit.heap import release_freed_heap


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc are Linux's")
def test_freed_heap_pages_go_back():
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(16384) for _ in range(4096)]  # 64 MB in blocks below the mmap threshold: the heap
    for b in blocks:
        ctypes.memset(b, 1, 16384)
    for b in blocks[:-1]:  # the last block holds the top of the heap: glibc gives nothing back by itself
        libc.free(b)
    before = rss_bytes()
    release_freed_heap()
    released = before - rss_bytes()
    libc.free(blocks[-1])
    assert released > 32 * 2**20, f"only {released / 2**20:.1f} MB went back"
