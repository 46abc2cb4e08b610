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


# -- the other kinds behind the same interface, on a tiny llama -----------------------------------

from llmkit.errors import LlmkitError
from llmkit.generate.cache import (
    BlockPool,
    CacheConfig,
    Int8KVCache,
    PagedKVCache,
    SlidingWindowKVCache,
    int8_absmax,
    make_cache,
)

INT8_BOUND = 5e-2  # int8 KV: max |logit difference| / max |logit| (tiny random model, large weights: ~2.2e-2 measured)


def _step_logits(model, cache, prompt: torch.Tensor, steps: list[int]) -> list[torch.Tensor]:
    """Logits of the prefill and of each forced next token, through ``cache``."""
    with torch.inference_mode():
        out = [model(prompt, cache=cache, last_only=True)[:, -1]]
        for t in steps:
            out.append(model(torch.full((prompt.shape[0], 1), t), cache=cache, last_only=True)[:, -1])
    return out


@pytest.mark.parametrize("kind", ["sliding", "paged", "int8"])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_kind_gives_the_contiguous_logits(tiny_llama, kind, batch):
    _, model = tiny_llama
    prompt = torch.randint(0, 128, (batch, 9), generator=torch.Generator().manual_seed(batch))
    steps = [5, 17, 99, 3, 64, 12]
    reference = _step_logits(model, ContiguousKVCache(model.spec, batch, 32), prompt, steps)
    cache = make_cache(CacheConfig(kind, window=32, block_size=4), model.spec, batch, 32)
    for got, want in zip(_step_logits(model, cache, prompt, steps), reference):
        rel = float((got - want).abs().max() / want.abs().max())
        assert rel <= (INT8_BOUND if kind == "int8" else 1e-5), (kind, rel)


def test_sliding_window_after_eviction_equals_attention_to_sinks_and_recent(tiny_llama):
    """Past the window, the ring buffer equals a full cache whose mask shows each query only the sinks + latest."""
    _, model = tiny_llama
    window, sinks = 10, 2
    ids = torch.randint(0, 128, (1, 22), generator=torch.Generator().manual_seed(5))
    cache, full = SlidingWindowKVCache(model.spec, 1, window, sinks), ContiguousKVCache(model.spec, 1, 32)
    with torch.inference_mode():
        model(ids[:, :window], cache=cache)
        model(ids[:, :window], cache=full)
        for t in range(window, ids.shape[1]):
            got = model(ids[:, t : t + 1], cache=cache, last_only=True)[0, -1]
            visible = torch.zeros(1, t + 1, dtype=torch.long)
            visible[0, :sinks] = 1
            visible[0, t + 1 - (window - sinks) :] = 1  # the latest window - sinks tokens, t included
            want = model(ids[:, t : t + 1], attention_mask=visible, cache=full, positions=torch.tensor([[t]]),
                         last_only=True)[0, -1]
            assert (got - want).abs().max() / want.abs().max() <= 1e-5, t
    assert cache.length == ids.shape[1] and cache.k.shape[3] == window


@pytest.mark.parametrize("kind", ["contiguous", "sliding", "paged", "int8"])
def test_reorder_follows_the_index_like_reordered_contiguous_rows(tiny_llama, kind):
    """After reorder(index), row b continues as row index[b] did (the beam-search step)."""
    _, model = tiny_llama
    prompt = torch.randint(0, 128, (3, 7), generator=torch.Generator().manual_seed(8))
    index = torch.tensor([2, 2, 0])
    cache = make_cache(CacheConfig(kind, window=32, block_size=4), model.spec, 3, 32)
    with torch.inference_mode():
        model(prompt, cache=cache)
        cache.reorder(index)
        got = model(torch.tensor([[1], [2], [3]]), cache=cache, last_only=True)[:, -1]
        want = model(torch.cat([prompt[index], torch.tensor([[1], [2], [3]])], 1), last_only=True)[:, -1]
    assert (got - want).abs().max() / want.abs().max() <= (INT8_BOUND if kind == "int8" else 1e-5)


@pytest.mark.parametrize("batch,tokens,block", [(1, 1, 16), (2, 17, 16), (3, 100, 32), (4, 64, 8)])
def test_paged_bytes_equal_calc_kv_with_block_rounding(batch, tokens, block):
    pool = BlockPool(SPEC, 64, block)
    cache = PagedKVCache(pool, batch)
    cache.update(0, torch.zeros(batch, 2, tokens, 16), torch.zeros(batch, 2, tokens, 16))
    assert cache.nbytes == kv_cache_bytes(SPEC, tokens, batch=batch, dtype="fp32", block_size=block)
    assert cache.nbytes == batch * -(-tokens // block) * pool.block_bytes


def test_sequences_share_one_pool_and_return_blocks():
    pool = BlockPool(SPEC, 6, 4)
    a, b = PagedKVCache(pool, 1), PagedKVCache(pool, 1)
    ka, kb = torch.randn(1, 2, 6, 16), torch.randn(1, 2, 5, 16)
    a.update(0, ka, ka)
    b.update(0, kb, kb)  # interleaved in the pool: a holds blocks 0, 1; b holds 2, 3
    assert a.tables == [[0, 1]] and b.tables == [[2, 3]] and len(pool.free) == 2
    a.advance(6)
    got, _ = a.update(0, torch.ones(1, 2, 1, 16), torch.ones(1, 2, 1, 16))
    assert torch.equal(got[:, :, :6], ka)
    a.crop(3)
    assert a.tables == [[0]] and len(pool.free) == 3
    with pytest.raises(CacheFullError, match="pool is exhausted"):
        PagedKVCache(pool, 1).update(0, torch.zeros(1, 2, 20, 16), torch.zeros(1, 2, 20, 16))


def test_int8_error_is_at_most_half_a_step():
    cache = Int8KVCache(SPEC, 2, 8)
    k = torch.randn(2, 2, 5, 16) * 3
    got, _ = cache.update(1, k, k)
    _, scale = int8_absmax(k)
    assert ((got - k).abs() <= scale / 2 + 1e-6).all()
    assert cache.nbytes < ContiguousKVCache(SPEC, 2, 8).nbytes / 3


def test_bad_cache_settings_are_refused():
    with pytest.raises(LlmkitError, match="cache kind"):
        CacheConfig("ring")
    with pytest.raises(LlmkitError, match="sinks"):
        CacheConfig("sliding", window=4, sinks=4)
