"""KV caches (sheet section 12): the keys and values of every past token, kept per layer.

    bytes = 2 (K and V) x n_layers x batch x n_kv_heads x d_head x max_len x bytes_per_element

The model talks to a cache through one small interface, so issue 6's kinds
(sliding-window ring buffer, paged blocks, int8) slot in behind it:

    length                    tokens already stored (the next write's first slot)
    update(layer, k, v)       store this call's k, v [batch, n_kv, seq, d_head] for a layer and
                              return every key/value visible now [batch, n_kv, length + seq, d_head]
    advance(n)                after all layers wrote: length += n
    reset()                   forget everything (keep the memory)
    nbytes                    bytes held in memory
"""

from __future__ import annotations

from typing import Protocol

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

    @property
    def nbytes(self) -> int: ...


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
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
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

    def reset(self) -> None:
        self.length = 0

    @property
    def nbytes(self) -> int:
        """Bytes of K and V together: 2 x layers x batch x n_kv x max_len x d_head x element size."""
        return self.k.nbytes + self.v.nbytes
