"""Attention: the three backends agree, masks hide what they should, the layer equals transformers' T5 attention."""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config
from transformers.models.t5.modeling_t5 import T5Attention

from llmkit.errors import LlmkitError
from llmkit.generate.cache import ContiguousKVCache
from llmkit.nn.attention import (
    ATTENTION_BACKENDS,
    Attention,
    CrossKVCache,
    Mask,
    attention_reference,
    attention_sdpa,
    attention_tiled,
    build_mask,
    causal_bias,
)
from llmkit.nn.position import ShawRelative, T5RelativeBias, alibi_bias, alibi_slopes
from llmkit.spec import ModelSpec


def _qkv(n_heads: int, n_kv: int, q_len: int, kv_len: int, batch: int = 2):
    g = torch.Generator().manual_seed(n_heads * 100 + n_kv * 10 + q_len)
    q = torch.randn(batch, n_heads, q_len, 16, generator=g)
    k = torch.randn(batch, n_kv, kv_len, 16, generator=g)
    v = torch.randn(batch, n_kv, kv_len, 16, generator=g)
    return q, k, v


def _left_padding(batch: int, length: int, pad: int) -> torch.Tensor:
    padding = torch.ones(batch, length, dtype=torch.long)
    padding[-1, :pad] = 0  # left padding on the last row
    return padding


@pytest.mark.parametrize("n_heads,n_kv", [(4, 4), (6, 2), (6, 1)])  # MHA, GQA, MQA
@pytest.mark.parametrize("q_len,past", [(7, 0), (1, 9), (3, 5)])  # prefill, decode, chunk after a cache
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("window", [None, 4])
def test_sdpa_equals_reference(n_heads, n_kv, q_len, past, padded, window):
    q, k, v = _qkv(n_heads, n_kv, q_len, past + q_len)
    padding = _left_padding(2, past + q_len, 2) if padded else None
    mask = build_mask(padding, q_len, past, torch.float32, window)
    expected = attention_reference(q, k, v, mask)
    assert torch.allclose(attention_sdpa(q, k, v, mask), expected, atol=1e-5, rtol=0)


MASKS = {
    "causal": lambda n, b: Mask(is_causal=True),
    "bidirectional": lambda n, b: Mask(),
    "sliding": lambda n, b: Mask(is_causal=True, window=5),
    "padded-causal": lambda n, b: Mask(is_causal=True, padding=_left_padding(b, n, 3)),
    "padded-bidirectional": lambda n, b: Mask(padding=_left_padding(b, n, 3)),
    "padded-sliding": lambda n, b: Mask(is_causal=True, window=4, padding=_left_padding(b, n, 2)),
}


@pytest.mark.parametrize("kind", list(MASKS))
@pytest.mark.parametrize("n", [1, 5, 33, 131])  # odd lengths, shorter and longer than a block
@pytest.mark.parametrize("n_heads,n_kv", [(4, 4), (6, 2)])
def test_tiled_equals_reference(kind, n, n_heads, n_kv):
    q, k, v = _qkv(n_heads, n_kv, n, n)
    mask = MASKS[kind](n, 2)
    expected = attention_reference(q, k, v, mask)
    for block in (7, 16, 256):
        assert torch.allclose(attention_tiled(q, k, v, mask, block=block), expected, atol=1e-5, rtol=0), block


@pytest.mark.parametrize("window", [None, 6])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("bias_rows", [9, 1])  # a bias per query, or one row broadcast over queries
def test_tiled_equals_reference_after_a_cache_and_with_a_position_bias(window, padded, bias_rows):
    q, k, v = _qkv(4, 2, 9, 40)
    bias = alibi_bias(alibi_slopes(4), torch.arange(31, 40), torch.arange(40))[:, :, -bias_rows:]  # [1, 4, 9|1, 40]
    padding = _left_padding(2, 40, 10) if padded else None
    mask = Mask(is_causal=True, past=31, window=window, bias=bias, padding=padding)
    expected = attention_reference(q, k, v, mask, scale=0.5)
    assert torch.allclose(attention_tiled(q, k, v, mask, scale=0.5, block=8), expected, atol=1e-5, rtol=0)
    assert torch.allclose(attention_sdpa(q, k, v, mask, scale=0.5), expected, atol=1e-5, rtol=0)


def test_reference_is_the_formula_on_one_head():
    q, k, v = _qkv(1, 1, 3, 3, batch=1)
    scores = q[0, 0] @ k[0, 0].T / 4.0  # sqrt(d_k) = 4
    scores = scores + torch.triu(torch.full((3, 3), float("-inf")), diagonal=1)
    expected = torch.softmax(scores, dim=-1) @ v[0, 0]
    got = attention_reference(q, k, v, Mask(is_causal=True))[0, 0]
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_causal_bias_with_cache_and_window():
    visible = causal_bias(3, 5, torch.float32) == 0
    assert visible.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    windowed = causal_bias(3, 5, torch.float32, window=2) == 0
    assert windowed.tolist() == [
        [False, True, True, False, False],
        [False, False, True, True, False],
        [False, False, False, True, True],
    ]


@pytest.mark.parametrize("backend", list(ATTENTION_BACKENDS))
def test_padding_keys_get_no_weight(backend):
    q, k, v = _qkv(2, 2, 4, 4, batch=1)
    padding = torch.tensor([[0, 0, 1, 1]])
    fn = ATTENTION_BACKENDS[backend]
    out = fn(q, k, v, build_mask(padding, 4, 0, torch.float32), None)
    # the last queries see keys 2 and 3 only: changing the padded keys' values changes nothing
    v2 = v.clone()
    v2[:, :, :2] = 100.0
    out2 = fn(q, k, v2, build_mask(padding, 4, 0, torch.float32), None)
    assert torch.allclose(out[:, :, 2:], out2[:, :, 2:], atol=1e-6, rtol=0)


# -- the layer --------------------------------------------------------------------------------------


def _spec(**extra) -> ModelSpec:
    base = dict(name="tiny", family="decoder", d_model=32, n_layers=1, n_heads=4, vocab_size=10, d_ff=64)
    return ModelSpec(**{**base, **extra})


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@torch.no_grad()
@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("backend", list(ATTENTION_BACKENDS))
def test_sliding_window_decode_with_cache_equals_prefill(window, backend):
    spec = _spec(n_kv_heads=2, sliding_window=window)
    attn = Attention(spec, 0)
    _randomise(attn)
    attn.backend = backend
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(1))
    full = attn(x, mask=build_mask(None, 9, 0, torch.float32, window))
    cache = ContiguousKVCache(spec, batch=2, max_len=9)
    steps = []
    for t in range(9):
        steps.append(attn(x[:, t : t + 1], mask=build_mask(None, 1, t, torch.float32, window), cache=cache))
        cache.advance(1)
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    if window is not None:  # the last token's output ignores everything before its window
        x2 = x.clone()
        x2[:, : 9 - window] += 5.0
        moved = attn(x2, mask=build_mask(None, 9, 0, torch.float32, window))
        assert torch.allclose(moved[:, -1], full[:, -1], atol=1e-5, rtol=0)


def _t5_pair(is_decoder: bool) -> tuple[T5Attention, Attention, T5RelativeBias]:
    config = T5Config(d_model=32, d_kv=8, num_heads=4, relative_attention_num_buckets=32,
                      relative_attention_max_distance=128, is_decoder=is_decoder, attn_implementation="eager")
    hf = T5Attention(config, has_relative_attention_bias=True, layer_idx=0).eval()
    _randomise(hf, seed=2)
    spec = ModelSpec(name="t5", family="encoder-decoder", n_encoder_layers=1, d_model=32, n_layers=1, n_heads=4,
                     head_dim=8, vocab_size=10, d_ff=64, position="t5")
    ours = Attention(spec, 0)
    ours.load_state_dict({f"{n}.weight": getattr(hf, n).weight for n in ("q", "k", "v", "o")})
    bias = T5RelativeBias(32, 4, 128, bidirectional=not is_decoder)
    bias.relative_attention_bias.load_state_dict(hf.relative_attention_bias.state_dict())
    return hf, ours, bias


@pytest.mark.parametrize("backend", list(ATTENTION_BACKENDS))
def test_t5_encoder_attention_equals_transformers(backend):
    """Bidirectional, padded, unscaled (scale 1.0), with T5's bucketed bias."""
    hf, ours, bias = _t5_pair(is_decoder=False)
    ours.backend = backend
    x = torch.randn(2, 11, 32, generator=torch.Generator().manual_seed(3))
    padding = _left_padding(2, 11, 4).flip(-1)  # right padding on the last row
    hf_mask = torch.zeros(2, 1, 1, 11).masked_fill(padding[:, None, None] == 0, torch.finfo(torch.float32).min)
    with torch.no_grad():
        expected, _, _ = hf(x, mask=hf_mask)
        got = ours(x, mask=Mask(padding=padding), position_bias=bias(torch.arange(11), torch.arange(11)))
    assert ours.scale == 1.0
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_t5_cross_attention_equals_transformers_and_is_computed_once():
    hf, ours, _ = _t5_pair(is_decoder=True)
    x = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(4))
    encoder = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(5))
    zero_bias = torch.zeros(1, 4, 3, 7)  # cross-attention layers get no position bias in T5
    ours.cross = True
    cache = CrossKVCache()
    with torch.no_grad():
        expected, _, _ = hf(x, key_value_states=encoder, position_bias=zero_bias)
        first = ours(x, kv_source=encoder, cache=cache)
        again = ours(x, cache=cache)  # keys/values from the cache: no encoder states needed
    assert torch.allclose(first, expected, atol=1e-5, rtol=0) and torch.equal(again, first)
    assert cache.nbytes == 2 * 2 * 4 * 7 * 8 * 4
    with pytest.raises(LlmkitError, match="kv_source"):
        ours(x, cache=CrossKVCache())


def test_shaw_relative_attention_equals_the_papers_sums():
    """e_ij = q_i . (k_j + a^K_ij) / sqrt(d),  z_i = sum_j softmax(e_i)_j (v_j + a^V_ij)  (Shaw et al. 2018)."""
    spec = _spec()
    attn = Attention(spec, 0)
    attn.relative = ShawRelative(max_distance=2, d_head=8)
    _randomise(attn, seed=6)
    x = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = attn(x, mask=Mask(is_causal=True))
        q = attn.q(x).view(5, 4, 8)
        k = attn.k(x).view(5, 4, 8)
        v = attn.v(x).view(5, 4, 8)
        wk, wv = attn.relative.key.weight, attn.relative.value.weight
        z = torch.zeros(5, 4, 8)
        for h in range(4):
            for i in range(5):
                js = range(i + 1)
                e = torch.stack([q[i, h] @ (k[j, h] + wk[max(-2, min(2, j - i)) + 2]) / 8**0.5 for j in js])
                p = torch.softmax(e, dim=0)
                z[i, h] = sum(p[n] * (v[j, h] + wv[max(-2, min(2, j - i)) + 2]) for n, j in enumerate(js))
        expected = attn.o(z.reshape(1, 5, 32))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_record_probs_keeps_the_attention_matrix():
    attn = Attention(_spec(n_kv_heads=2), 0)
    _randomise(attn, seed=8)
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(9))
    mask = build_mask(_left_padding(2, 6, 2), 6, 0, torch.float32)
    with torch.no_grad():
        fast = attn(x, mask=mask)
        attn.record_probs = True
        recorded = attn(x, mask=mask)
    probs = attn.probs  # [batch, heads, q, kv]
    assert probs.shape == (2, 4, 6, 6) and torch.allclose(recorded, fast, atol=1e-5, rtol=0)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 4, 6), atol=1e-6)
    assert float(probs[0].triu(1).abs().max()) == 0.0  # causal: nothing above the diagonal
    assert float(probs[1, :, 2:, 2:].triu(1).abs().max()) == 0.0  # (queries that see no real key spread evenly)
    assert float(probs[1, :, 2:, :2].abs().max()) == 0.0  # padded keys get no weight from real queries
