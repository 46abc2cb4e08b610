"""CPU kernels for the decode hot path, in C (``cpu.c``), called through ctypes on tensors' memory.

Decoding one token of a small model is a few hundred matrix-vector products and a few hundred tiny
ops; PyTorch's GEMV reaches ~half this machine's memory bandwidth and each tiny op costs microseconds
of dispatch. These kernels do the same arithmetic (tests/kernels/ hold each to its PyTorch twin):

    matvec(w, fmt, x)         y = x W^T for few rows; W as float32, bfloat16, or GGML Q8_0 / Q4_1 blocks
    dequantize_rows(w, fmt)   W's rows (or some of them) as float32
    rms_norm(x, g, eps)       x / sqrt(mean(x^2) + eps) * g
    silu_mul_(g, u)           g = silu(g) * u, SwiGLU's product, in place
    rope_half_(x, cos, sin)   in place, the half-split rotation of position.apply_rope_half
    attend_one(q, k, v, ...)  one query per head over a KV cache: GQA, key padding, window start
    decode_tokens (nn/fast.py) new tokens of one sequence of a LLaMA-family decoder, all of the above composed
                              (a decoding step, a verification, a whole float32 prompt: blocked products and
                              tiled attention); decode_batch: one new token for each sequence of a (left-padded) batch
    BPEMerger                 tokenize/bpe.py's merge loop over a hash table of the merges

The C file is compiled on first use with the system compiler (``cc -O3 -march=native``) into
``<llmkit cache>/kernels/`` (a name keyed by the source, flags and machine) and reused after. Without a
compiler, or with ``LLMKIT_KERNELS=0``, :func:`enabled` is False and every caller takes its PyTorch path.
Threads: a pool of ``torch.get_num_threads()`` (or ``LLMKIT_THREADS``) pinned threads of the library's own,
started with the first :func:`session` (a model's forward opens one and pins the caller too). The module
imports no torch itself: the tokenizer's BPE merges (:class:`BPEMerger`) use the library without it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are made: the tokenizer uses the library without it
    import torch

SOURCE = Path(__file__).with_name("cpu.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC", "-std=c11", "-pthread")
FORMATS = ("f32", "bf16", "q8_0", "q4_1")  # cpu.c's FMT_* codes are the indices
GGML_FORMATS = {"F32": "f32", "BF16": "bf16", "Q8_0": "q8_0", "Q4_1": "q4_1"}  # GGML type -> the format it is
MATVEC_MAX_ROWS = 16  # the module path's products of more rows (a prefill) go to PyTorch's GEMM: our pool
# stays idle while PyTorch's threads run (cpu.c's pool_enabled); the C step's prompts use cpu.c's span_f32
QK = 32  # weights per GGML block
BLOCK_BYTES = {"q8_0": 34, "q4_1": 20}

_i64, _int, _ptr, _f32 = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_float
SIGNATURES = {
    **{f"matvec_{fmt}": (_int, [_ptr, _ptr, _ptr, _i64, _i64, _i64, _int]) for fmt in FORMATS},
    "rms_norm": (None, [_ptr, _ptr, _ptr, _i64, _i64, _f32]),
    "rope_half": (None, [_ptr, _ptr, _ptr] + [_i64] * 9),
    "attend_one": (None, [_ptr] * 5 + [_i64] * 10 + [_f32]),
    "decode_tokens": (_int, [_ptr, _ptr, _i64, _i64, _int, _ptr]),
    "decode_batch": (_int, [_ptr, _ptr, _i64, _i64, _ptr, _ptr, _ptr]),
    "dequantize_rows": (_int, [_i64, _ptr, _i64, _i64, _ptr, _i64, _ptr]),
    "silu_mul_inplace": (None, [_ptr, _ptr, _i64]),
    "llmkit_pool_start": (_int, [_int]),
    "bpe_table_new": (_ptr, [_ptr] * 4 + [_i64]),
    "bpe_table_free": (None, [_ptr]),
    "bpe_merge_ids": (_i64, [_ptr, _ptr, _i64]),
    "llmkit_pool_session": (None, [_int]),
    "llmkit_pool_enable": (None, [_int]),
}


class KernelError(RuntimeError):
    """A kernel refused its input (a shape it does not handle): a bug in the caller, never the user's input."""


def library_path() -> Path:
    """Where the compiled library lives: keyed by the source, the flags, the compiler and the machine."""
    from llmkit.hub import cache_dir

    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _compiler_version().encode()
                         + platform.machine().encode() + _cpu_flags().encode()).hexdigest()[:16]
    return cache_dir() / "kernels" / f"cpu-{key}.so"


def _compiler() -> str:
    return os.environ.get("CC", "cc")


@functools.cache
def _compiler_version() -> str:
    try:
        return subprocess.run([_compiler(), "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), so a cache shared between machines never runs code built for another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def build(target: Path) -> None:
    """Compile cpu.c into ``target`` (written to a temporary name, then renamed: concurrent builds are safe)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([_compiler(), *FLAGS, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode != 0:
            raise OSError(f"{_compiler()} failed:\n{done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_MATVEC: dict[str, ctypes._CFuncPtr] = {}  # format -> its matvec, filled when the library loads


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels (built on first use), or None when they are turned off or cannot be built."""
    if os.environ.get("LLMKIT_KERNELS", "1") == "0":
        return None
    path = library_path()
    try:
        if not path.exists():
            build(path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as e:
        warnings.warn(f"llmkit's C kernels are unavailable ({e}); llmkit runs on its PyTorch and Python paths "
                      "alone, slower. Install a C compiler (gcc) or set LLMKIT_KERNELS=0 to silence this.", stacklevel=2)
        return None
    for name, (restype, argtypes) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    _MATVEC.update({fmt: getattr(lib, f"matvec_{fmt}") for fmt in FORMATS})
    if "torch" in sys.modules:
        start_pool(lib)
    return lib


_pool_started = False


def start_pool(lib: ctypes.CDLL) -> None:
    """Start the kernels' threads (once). PyTorch's own OpenMP threads are made first, so that none of them is
    born inside a session, pinned to the caller's CPU."""
    global _pool_started
    if _pool_started:
        return
    import torch

    if torch.get_num_threads() > 1:
        torch.ones(1 << 20).add_(1.0)
    lib.llmkit_pool_start(threads())
    _pool_started = True


def threads() -> int:
    """The pool's size: ``LLMKIT_THREADS`` if set, else PyTorch's thread count when the pool starts."""
    import torch

    return int(os.environ.get("LLMKIT_THREADS") or 0) or torch.get_num_threads()


def enabled() -> bool:
    """True when the C kernels are built and loaded (callers fall back to PyTorch otherwise)."""
    return library() is not None


@contextmanager
def session() -> Iterator[None]:
    """Pin the calling thread to its CPU while decoding (see cpu.c's pool), and give its affinity back after.

    Without a session the kernels still run, but on a small virtual machine the scheduler may park the caller
    on a worker's CPU, and every barrier then waits a time slice. Sessions nest; the outermost one counts.
    """
    lib = library()
    global _depth
    if lib is None:
        yield
        return
    start_pool(lib)
    _depth += 1
    if _depth == 1:
        import torch

        lib.llmkit_pool_session(1)
        lib.llmkit_pool_enable(int(torch.get_num_threads() == 1))  # see cpu.c's pool_enabled
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            lib.llmkit_pool_session(0)
            lib.llmkit_pool_enable(1)


_depth = 0


def pinned(fn: Callable) -> Callable:
    """Run ``fn`` inside a :func:`session` (a model's forward: two system calls per call, cheap beside it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with session():
            return fn(*args, **kwargs)

    return wrapper


def _usable(*tensors: torch.Tensor) -> bool:
    """Kernels take plain CPU memory without autograd: tensors that need gradients go through PyTorch."""
    return all(t.device.type == "cpu" and not t.requires_grad for t in tensors)


# -- matrix-vector products ------------------------------------------------------------------------------------


def matvec(weight: torch.Tensor, fmt: str, x: torch.Tensor, out: torch.Tensor | None = None,
           accumulate: bool = False) -> torch.Tensor:
    """y [..., N] = x [..., K] W^T, W [N, K] held as ``fmt`` (see FORMATS); ``accumulate``: out += x W^T.

    f32: weight float32 [N, K]; bf16: bfloat16 [N, K]; q8_0 / q4_1: uint8 [N, K/32 * block bytes], each row
    its K/32 GGML blocks (the activations then go to int16 per block of 32, see cpu.c). x: float32.
    """
    if not _MATVEC:
        library()
    k = x.shape[-1]
    if not x.is_contiguous():
        x = x.contiguous()
    if out is None:
        out = x.new_empty(x.shape[:-1] + (weight.shape[0],))
    code = _MATVEC[fmt](weight.data_ptr(), x.data_ptr(), out.data_ptr(), x.numel() // k, weight.shape[0], k,
                        accumulate)
    if code:
        raise KernelError(f"matvec_{fmt} refused K={k} (code {code}): quantized rows need K divisible by {QK}")
    return out


def dequantize_rows(data: torch.Tensor, fmt: str, in_features: int, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of W [N, K] held as ``fmt`` in float32: all of them [N, K], or those of ``ids`` [..., K]."""
    import torch

    n = data.shape[0]
    if ids is None:
        out = torch.empty(n, in_features)
        code = library().dequantize_rows(FORMATS.index(fmt), data.data_ptr(), n, in_features, None, n, out.data_ptr())
    else:
        flat = ids.reshape(-1).to(torch.int64).contiguous()
        out = torch.empty(*ids.shape, in_features)
        code = library().dequantize_rows(FORMATS.index(fmt), data.data_ptr(), n, in_features, flat.data_ptr(),
                                         flat.numel(), out.data_ptr())
    if code == -4:
        raise IndexError(f"a row id is out of range for a table of {n} rows")
    if code:
        raise KernelError(f"dequantize_rows refused {fmt} rows of {in_features} (code {code})")
    return out


# -- RMSNorm, RoPE, one-query attention ---------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * g over the last dimension; x, g float32 (the sum of squares in double)."""
    import torch

    x = x.contiguous()
    y = torch.empty_like(x)
    d = x.shape[-1]
    library().rms_norm(x.data_ptr(), weight.data_ptr(), y.data_ptr(), x.numel() // d, d, eps)
    return y


def silu_mul_(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """gate = silu(gate) * up in place (float32, contiguous, same shape): SwiGLU's product in one pass."""
    library().silu_mul_inplace(gate.data_ptr(), up.data_ptr(), gate.numel())
    return gate


def rope_half_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, T, D] (any strides, last one 1) in place by cos, sin [B|1, 1, T, d_rot]; returns x."""
    b, h, t, _ = x.shape
    d_rot = cos.shape[-1]
    cos, sin = cos.contiguous(), sin.contiguous()
    cb = 0 if cos.shape[0] == 1 else t * d_rot
    library().rope_half(x.data_ptr(), cos.data_ptr(), sin.data_ptr(), b, h, t, d_rot,
                        x.stride(0), x.stride(1), x.stride(2), cb, d_rot)
    return x


def attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, start: int = 0,
               padding: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q K^T * scale) V for one query per head: q [B, H, 1, D], k, v [B, KV, L, D] -> [B, H, 1, D].

    k and v may be views into a cache (strides kept); keys before ``start`` and where padding [B, L] is 0 are
    hidden. Every query must see at least one key.
    """
    import torch

    b, h, _, d = q.shape
    n_kv, length = k.shape[1], k.shape[2]
    out = torch.empty(b, h, 1, d, dtype=torch.float32)
    pad = None if padding is None else padding[:, :length].to(torch.uint8).contiguous()
    library().attend_one(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                         None if pad is None else pad.data_ptr(), b, h, n_kv, length, d, start,
                         q.stride(0), q.stride(1), k.stride(0), k.stride(1), scale)
    return out


def attend_one_supported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """The layouts attend_one reads: float32, one query, last dims contiguous, v strided as k."""
    import torch

    return (q.dtype == k.dtype == v.dtype == torch.float32 and q.shape[2] == 1 and q.stride(3) == 1
            and k.stride(3) == 1 and k.stride(2) == k.shape[3] and v.stride() == k.stride() and _usable(q, k, v))


# -- BPE merges --------------------------------------------------------------------------------------------------


class BPEMerger:
    """tokenize/bpe.py's ``bpe_merge`` in C: a hash table of the merges, one call per piece (short pieces)."""

    def __init__(self, merges) -> None:
        """``merges``: a tokenize.bpe.MergeTable (int32 arrays left, right, merged; rank = index)."""
        import array

        self.args = (merges,)  # to rebuild when pickled
        rank = array.array("i", range(len(merges.merged)))  # a pair listed twice keeps its last rank
        self.lib = library()
        self.table = self.lib.bpe_table_new(merges.left.buffer_info()[0], merges.right.buffer_info()[0],
                                            rank.buffer_info()[0], merges.merged.buffer_info()[0], len(rank))
        if not self.table:
            raise MemoryError("bpe_table_new: out of memory")

    def merge(self, ids: list[int]) -> list[int]:
        """``ids`` after every merge, lowest rank first, leftmost on ties (equal to bpe_merge)."""
        import array

        buf = array.array("i", ids)
        n = self.lib.bpe_merge_ids(self.table, buf.buffer_info()[0], len(ids))
        if n < 0:
            raise MemoryError("bpe_merge_ids: out of memory")
        return buf[:n].tolist()

    def __reduce__(self):
        return BPEMerger, self.args

    def __del__(self) -> None:
        if getattr(self, "table", None):
            self.lib.bpe_table_free(self.table)
            self.table = None


def bpe_merger(merges) -> BPEMerger | None:
    """A C merger for ``merges`` (a tokenize.bpe.MergeTable), or None without the kernels (callers merge in Python)."""
    return BPEMerger(merges) if enabled() else None
