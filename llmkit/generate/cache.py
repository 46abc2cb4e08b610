"""KV caches (sheet section 12): the keys and values of every past token, kept per layer.

    bytes = 2 (K and V) x n_layers x batch x n_kv_heads x d_head x max_len x bytes_per_element

The model talks to a cache through one small interface, so issue 6's kinds
(sliding-window ring buffer, paged blocks, int8) slot in behind it:

    length                    tokens already stored (the next write's first slot)
    update(layer, k, v)       store this call's k, v [batch, n_kv, seq, d_head] for a layer and
                              return every key/value visible now [batch, n_kv, length + seq, d_head]
    advance(n)                after all layers wrote: length += n
    reset()                   forget everything (keep the memory)
    crop(n)                   forget every token from n on (speculative decoding's rollback)
    reorder(index, start)     row b becomes row index[b], slots start.. only (beam search, contrastive search)
    nbytes                    bytes held in memory

Kinds (:func:`make_cache` builds one from a :class:`CacheConfig`):

    contiguous  preallocated [layers, batch, n_kv, max_len, d_head]
    sliding     StreamingLLM: the first ``sinks`` tokens + a ring buffer of the latest (Xiao et al. 2023)
    paged       fixed-size blocks from a shared BlockPool + a block table per sequence (vLLM, Kwon et al. 2023)
    int8        K, V stored int8 with one absmax scale per (token, head); error <= scale / 2 per element
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec


class CacheFullError(LlmkitError):
    """The context window (the cache's max_len) is used up."""


class KVCache(Protocol):
    """What the model needs from any KV cache."""

    length: int

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def advance(self, n: int) -> None: ...

    def reset(self) -> None: ...

    def crop(self, length: int) -> None: ...

    def reorder(self, index: torch.Tensor, start: int = 0) -> None: ...

    @property
    def nbytes(self) -> int: ...


CacheKind = Literal["contiguous", "sliding", "paged", "int8"]


@dataclass(frozen=True)
class CacheConfig:
    """Which KV cache to build: ``window`` tokens kept (sliding, of which ``sinks`` are the first), paged ``block_size``."""

    kind: CacheKind = "contiguous"
    window: int = 1024
    sinks: int = 4
    block_size: int = 16

    def __post_init__(self) -> None:
        if self.kind not in CacheKind.__args__:  # type: ignore[attr-defined]
            raise LlmkitError(f"cache kind must be one of {', '.join(CacheKind.__args__)}; got {self.kind!r}")  # type: ignore[attr-defined]
        if not 0 <= self.sinks < self.window:
            raise LlmkitError(f"a sliding cache needs 0 <= sinks < window; got sinks={self.sinks}, window={self.window}")
        if self.block_size < 1:
            raise LlmkitError(f"block_size must be at least 1; got {self.block_size}")


class ContiguousKVCache:
    """Preallocated K and V tensors [n_layers, batch, n_kv, max_len, d_head]: writes land in place, no re-allocation.

        layer l, slot s:   k[l, :, :, s] = key of token s     (slots 0 .. length-1 are filled)
        |<- filled (length) ->|<- free (max_len - length) ->|
    """

    def __init__(
        self, spec: ModelSpec, batch: int, max_len: int, dtype: torch.dtype = torch.float32, device=None
    ) -> None:
        if max_len <= 0 or batch <= 0:
            raise LlmkitError(f"a KV cache needs positive batch and max_len; got batch={batch}, max_len={max_len}")
        shape = (spec.n_layers, batch, spec.kv_heads, max_len, spec.d_head)
        # Not zeroed: slots are read only once written (0 .. length-1), and untouched pages of a large
        # allocation take no memory until a token lands there.
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.k_layers, self.v_layers = self.k.unbind(0), self.v.unbind(0)  # per-layer views, made once
        self.max_len, self.length = max_len, 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [batch, n_kv, seq, d_head] at slots length.. and return slots 0..length+seq."""
        end = self.length + k.shape[2]  # k, v: [batch, n_kv, seq, d_head]
        if end > self.max_len:
            raise CacheFullError(
                f"the context window is full: {end} tokens do not fit in the KV cache of {self.max_len}; "
                "use a shorter prompt or fewer new tokens"
            )
        n = k.shape[2]
        self.k_layers[layer].narrow(2, self.length, n).copy_(k)
        self.v_layers[layer].narrow(2, self.length, n).copy_(v)
        return self.k_layers[layer].narrow(2, 0, end), self.v_layers[layer].narrow(2, 0, end)  # [batch, n_kv, end, d_head]

    def advance(self, n: int) -> None:
        self.length += n

    def contiguous_layout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V [n_layers, batch, n_kv, max_len, d_head], for code that writes slots itself (nn/fast.py)."""
        return self.k, self.v

    def reset(self) -> None:
        self.length = 0

    def crop(self, length: int) -> None:
        """Keep slots 0..length-1 (the rest is overwritten by later writes)."""
        self.length = min(self.length, length)

    def reorder(self, index: torch.Tensor, start: int = 0) -> None:
        """Row b takes row index[b]'s slots start..length-1 (index_select on the batch dim, filled slots only)."""
        for store in (self.k, self.v):
            part = store.narrow(3, start, self.length - start)  # [layers, batch, n_kv, filled, d_head]
            part.copy_(part.index_select(1, index))

    @property
    def nbytes(self) -> int:
        """Bytes of K and V together: 2 x layers x batch x n_kv x max_len x d_head x element size."""
        return self.k.nbytes + self.v.nbytes


class SlidingWindowKVCache(ContiguousKVCache):
    """StreamingLLM: ``sinks`` attention-sink slots, then a ring buffer of the latest window - sinks tokens.

        token t < sinks      -> slot t (kept forever)
        token t >= sinks     -> slot sinks + (t - sinks) % (window - sinks)   (overwrites the oldest)

    Keys keep the RoPE of their true position, so a query sees exactly the sinks and the latest
    tokens, as full attention masked to them would. Once the window is full, tokens come one at a
    time (the loop feeds them so); ``length`` counts every token seen (the next position).
    """

    contiguous_layout = None  # a ring buffer: slots are not positions

    def __init__(self, spec: ModelSpec, batch: int, window: int, sinks: int = 4, dtype: torch.dtype = torch.float32,
                 device=None) -> None:
        super().__init__(spec, batch, window, dtype, device)
        self.sinks = sinks

    def slot(self, t: int) -> int:
        """Storage slot of token t."""
        return t if t < self.sinks else self.sinks + (t - self.sinks) % (self.max_len - self.sinks)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [batch, n_kv, seq, d_head]; return every held slot (time order until the ring wraps)."""
        n = k.shape[2]
        if self.length + n <= self.max_len:
            return super().update(layer, k, v)
        if n != 1:
            raise CacheFullError(f"a sliding-window cache of {self.max_len} takes tokens one at a time once full; "
                                 f"got {n} at once after {self.length}")
        s = self.slot(self.length)
        self.k_layers[layer][:, :, s] = k[:, :, 0]
        self.v_layers[layer][:, :, s] = v[:, :, 0]
        return self.k_layers[layer], self.v_layers[layer]  # [batch, n_kv, window, d_head], ring order

    def crop(self, length: int) -> None:
        if length < self.length and self.length > self.max_len:
            raise LlmkitError("a sliding-window cache cannot roll back once its ring has wrapped")
        self.length = min(self.length, length)

    def reorder(self, index: torch.Tensor, start: int = 0) -> None:
        if self.length <= self.max_len:
            return super().reorder(index, start)
        for store in (self.k, self.v):  # the ring wrapped: slots are out of time order, take them all
            store.copy_(store.index_select(1, index))


class BlockPool:
    """One pool of KV blocks [layers, n_kv, n_blocks, block_size, d_head] that many sequences share (vLLM)."""

    def __init__(self, spec: ModelSpec, n_blocks: int, block_size: int = 16, dtype: torch.dtype = torch.float32,
                 device=None) -> None:
        shape = (spec.n_layers, spec.kv_heads, n_blocks, block_size, spec.d_head)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size = block_size
        self.free = list(range(n_blocks - 1, -1, -1))  # a stack: the lowest id is handed out first

    @property
    def block_bytes(self) -> int:
        """Bytes of one block, K and V: 2 x layers x n_kv x block_size x d_head x element size."""
        return (self.k.nbytes + self.v.nbytes) // self.k.shape[2]

    def allocate(self) -> int:
        if not self.free:
            raise CacheFullError("the KV block pool is exhausted; give it more blocks or run fewer sequences")
        return self.free.pop()

    def release(self, blocks: list[int]) -> None:
        self.free.extend(reversed(blocks))


class PagedKVCache:
    """PagedAttention's layout: each sequence's tokens live in pool blocks listed in its block table.

        token t of sequence b  ->  pool block table[b][t // block_size], offset t % block_size

    ``update`` gathers the visible K/V through the table (attention then runs unchanged);
    memory is whole blocks: ceil(tokens / block_size) blocks per sequence.
    """

    def __init__(self, pool: BlockPool, batch: int) -> None:
        self.pool, self.batch, self.length = pool, batch, 0
        self.tables: list[list[int]] = [[] for _ in range(batch)]

    def reserve(self, end: int) -> None:
        """Allocate blocks so every sequence can hold ``end`` tokens."""
        need = -(-end // self.pool.block_size)
        for table in self.tables:
            while len(table) < need:
                table.append(self.pool.allocate())

    def slots(self, start: int, end: int) -> torch.Tensor:
        """Flat pool slots [batch, end - start] of tokens start..end-1 (block id x block_size + offset)."""
        t = torch.arange(start, end)
        table = torch.tensor(self.tables)  # [batch, blocks]
        return table[:, t // self.pool.block_size] * self.pool.block_size + t % self.pool.block_size

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scatter k, v [batch, n_kv, seq, d_head] into their blocks; gather tokens 0..length+seq back."""
        end = self.length + k.shape[2]
        self.reserve(end)
        out = []
        for store, new in ((self.pool.k[layer], k), (self.pool.v[layer], v)):
            flat = store.flatten(1, 2)  # [n_kv, n_blocks * block_size, d_head], a view
            flat[:, self.slots(self.length, end)] = new.transpose(0, 1)  # [n_kv, batch, seq, d]
            out.append(flat[:, self.slots(0, end)].transpose(0, 1))  # [batch, n_kv, end, d_head]
        return out[0], out[1]

    def advance(self, n: int) -> None:
        self.length += n

    def reset(self) -> None:
        self.crop(0)

    def crop(self, length: int) -> None:
        """Forget tokens from ``length`` on and give whole unused blocks back to the pool."""
        self.length = min(self.length, length)
        keep = -(-self.length // self.pool.block_size)
        for table in self.tables:
            self.pool.release(table[keep:])
            del table[keep:]

    def reorder(self, index: torch.Tensor, start: int = 0) -> None:
        """Row b takes row index[b]'s tokens start.. (copied slot by slot inside the pool)."""
        src, dst = self.slots(start, self.length)[index], self.slots(start, self.length)
        for store in (self.pool.k, self.pool.v):
            flat = store.flatten(2, 3)  # [layers, n_kv, n_blocks * block_size, d_head], a view
            flat[:, :, dst] = flat[:, :, src]

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks this cache holds: blocks x block_bytes (tokens rounded up to whole blocks)."""
        return sum(len(t) for t in self.tables) * self.pool.block_bytes


def int8_absmax(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8, scale [..., 1]): symmetric absmax over the last dim, q = round(x / s), s = max|x| / 127."""
    scale = x.float().abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / 127
    return torch.round(x.float() / scale).clamp(-127, 127).to(torch.int8), scale


class Int8KVCache(ContiguousKVCache):
    """K and V held as int8 with one float32 scale per (token, head): ~1/4 the bytes of float32.

    ``update`` quantizes the new tokens and returns the dequantized visible K/V (q * s), so each
    element is within s / 2 = max|row| / 254 of the float value.
    """

    contiguous_layout = None  # int8 slots and scales: the C step writes float32

    def __init__(self, spec: ModelSpec, batch: int, max_len: int, dtype: torch.dtype = torch.float32, device=None):
        super().__init__(spec, batch, max_len, torch.int8, device)
        scales = (spec.n_layers, batch, spec.kv_heads, max_len, 1)
        self.k_scale, self.v_scale = torch.zeros(scales, device=device), torch.zeros(scales, device=device)
        self.out_dtype = dtype

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize and store k, v [batch, n_kv, seq, d_head]; return dequantized slots 0..length+seq."""
        n, end = k.shape[2], self.length + k.shape[2]
        if end > self.max_len:
            raise CacheFullError(f"the context window is full: {end} tokens do not fit in the KV cache of {self.max_len}")
        out = []
        for store, scales, new in ((self.k, self.k_scale, k), (self.v, self.v_scale, v)):
            q, s = int8_absmax(new)
            store[layer].narrow(2, self.length, n).copy_(q)
            scales[layer].narrow(2, self.length, n).copy_(s)
            out.append((store[layer, :, :, :end].float() * scales[layer, :, :, :end]).to(self.out_dtype))
        return out[0], out[1]  # [batch, n_kv, end, d_head]

    def reorder(self, index: torch.Tensor, start: int = 0) -> None:
        super().reorder(index, start)
        for store in (self.k_scale, self.v_scale):
            part = store.narrow(3, start, self.length - start)
            part.copy_(part.index_select(1, index))

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes + self.k_scale.nbytes + self.v_scale.nbytes


def make_cache(config: CacheConfig, spec: ModelSpec, batch: int, max_len: int, dtype: torch.dtype = torch.float32,
               pool: BlockPool | None = None):
    """A KV cache of ``config.kind`` for ``batch`` sequences of up to ``max_len`` tokens."""
    if config.kind == "sliding":
        return SlidingWindowKVCache(spec, batch, min(config.window, max_len), config.sinks, dtype)
    if config.kind == "paged":
        pool = pool or BlockPool(spec, batch * -(-max_len // config.block_size), config.block_size, dtype)
        return PagedKVCache(pool, batch)
    if config.kind == "int8":
        return Int8KVCache(spec, batch, max_len, dtype)
    return ContiguousKVCache(spec, batch, max_len, dtype)
