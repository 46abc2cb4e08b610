"""Freed C-heap pages back to the system: the one place llmkit calls glibc's ``malloc_trim``.

glibc keeps the pages of freed memory at the top of its heap for reuse; after PyTorch has run big
allocations it keeps up to 64 MB of them (the trim threshold follows the mmap threshold upward). That
is the right trade inside a phase that reuses them, and dead weight after one that is over: loading
(GGUF metadata, the tokenizer's build, per-tensor scratch) and a long prompt's prefill (activations
of every position and MKL's scratch, while decoding needs a few rows).
"""

from __future__ import annotations

import ctypes


def release_freed_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc; elsewhere nothing: its allocator decides).

    ~1 ms when there is something to give back. SmolLM2 fp32 (benchmarks/decode.py): ~7 MB after
    loading, ~12 MB after a 300-token prefill.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
