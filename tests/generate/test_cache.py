"""The contiguous KV cache: its bytes are the planner's figure; it refuses to overflow."""

from __future__ import annotations

import pytest
import torch

from llmkit.calc.kvcache import kv_cache_bytes
from llmkit.generate.cache import CacheFullError, ContiguousKVCache
from llmkit.spec import ModelSpec

SPEC = ModelSpec(name="t", family="decoder", d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, vocab_size=100,
                 d_ff=128, position="rope", norm="rmsnorm", ffn_kind="swiglu", activation="silu")


@pytest.mark.parametrize("dtype,name", [(torch.float32, "fp32"), (torch.bfloat16, "bf16")])
@pytest.mark.parametrize("batch,max_len", [(1, 17), (3, 256)])
def test_bytes_equal_calc_kv(dtype, name, batch, max_len):
    cache = ContiguousKVCache(SPEC, batch, max_len, dtype)
    assert cache.nbytes == kv_cache_bytes(SPEC, max_len, batch=batch, dtype=name)


def test_update_writes_in_place_and_returns_the_filled_slots():
    cache = ContiguousKVCache(SPEC, 1, 8)
    storage = cache.k.data_ptr()
    k = torch.randn(1, 2, 5, 16)
    got_k, got_v = cache.update(0, k, -k)
    cache.advance(5)
    one = torch.randn(1, 2, 1, 16)
    got_k, got_v = cache.update(0, one, -one)
    assert cache.k.data_ptr() == storage
    assert torch.equal(got_k, torch.cat([k, one], dim=2)) and torch.equal(got_v, -got_k)


def test_overflow_is_a_clear_error():
    cache = ContiguousKVCache(SPEC, 1, 4)
    with pytest.raises(CacheFullError, match="context window is full"):
        cache.update(0, torch.zeros(1, 2, 5, 16), torch.zeros(1, 2, 5, 16))
