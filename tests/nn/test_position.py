"""Positional encodings against transformers (RoPE + scalings, T5 buckets, ALiBi, sinusoidal) and their properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, T5Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.distilbert.modeling_distilbert import (
    create_sinusoidal_embeddings,
)
from transformers.models.llama.modeling_llama import (
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)
from transformers.models.t5.modeling_t5 import T5Attention

from llmkit.nn.position import (
    ShawRelative,
    T5RelativeBias,
    alibi_bias,
    alibi_slopes,
    apply_rope_half,
    apply_rope_interleaved,
    apply_xpos,
    rope_cos_sin,
    rope_inv_freq,
    sinusoidal_table,
    t5_relative_bucket,
    xpos_scale,
)
from llmkit.spec import SpecError, from_hf_config


def _config(**extra) -> LlamaConfig:
    return LlamaConfig(hidden_size=128, num_attention_heads=4, num_hidden_layers=1, intermediate_size=64,
                       max_position_embeddings=4096, rope_theta=50000.0, **extra)


def test_cos_sin_and_rotation_equal_transformers():
    config = _config()
    hf_rope = LlamaRotaryEmbedding(config)
    positions = torch.tensor([[0, 1, 5, 100, 4095]])
    q = torch.randn(1, 4, 5, 32, generator=torch.Generator().manual_seed(0))
    k = torch.randn(1, 4, 5, 32, generator=torch.Generator().manual_seed(1))
    hf_cos, hf_sin = hf_rope(q, positions)
    inv_freq, scale = rope_inv_freq(from_hf_config(config.to_dict()))
    cos, sin = rope_cos_sin(inv_freq, positions, scale)
    assert torch.allclose(cos, hf_cos, atol=1e-6, rtol=0) and torch.allclose(sin, hf_sin, atol=1e-6, rtol=0)
    hf_q, hf_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    assert torch.allclose(apply_rope_half(q, cos, sin), hf_q, atol=1e-6, rtol=0)
    assert torch.allclose(apply_rope_half(k, cos, sin), hf_k, atol=1e-6, rtol=0)


SCALINGS = {
    "linear": dict(rope_type="linear", factor=4.0),
    "dynamic": dict(rope_type="dynamic", factor=4.0),
    "yarn": dict(rope_type="yarn", factor=8.0, original_max_position_embeddings=512, beta_fast=32, beta_slow=1),
    "yarn-attention-factor": dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=1024,
                                  attention_factor=1.3),
    "llama3": dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=512),
    "longrope": dict(rope_type="longrope", original_max_position_embeddings=1024,
                     short_factor=[1.0 + i / 16 for i in range(16)], long_factor=[2.0 + i / 4 for i in range(16)]),
}


@pytest.mark.parametrize("name", list(SCALINGS))
@pytest.mark.parametrize("seq_len", [None, 8192])  # within, and beyond, the trained context (dynamic, longrope)
def test_scalings_equal_transformers_rope_init(name, seq_len):
    config = _config(rope_scaling=dict(SCALINGS[name]))
    kind = SCALINGS[name]["rope_type"]
    hf_inv_freq, hf_scale = ROPE_INIT_FUNCTIONS[kind](config, "cpu", seq_len=seq_len)
    inv_freq, scale = rope_inv_freq(from_hf_config(config.to_dict()), seq_len)
    assert torch.allclose(inv_freq, hf_inv_freq, rtol=1e-6, atol=0)
    assert scale == pytest.approx(hf_scale, rel=1e-12)


def test_scaling_missing_a_field_is_a_spec_error():
    spec = from_hf_config(_config(rope_scaling=dict(rope_type="llama3", factor=8.0, original_max_position_embeddings=512,
                                                    high_freq_factor=4.0, low_freq_factor=1.0)).to_dict())
    broken = spec.with_(rope_scaling=spec.rope_scaling.__class__(kind="llama3", factor=8.0))
    with pytest.raises(SpecError, match="original_max_positions"):
        rope_inv_freq(broken)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(0, 2000))
def test_rotated_dot_product_depends_only_on_distance(m, n, shift):
    inv_freq, _ = rope_inv_freq(from_hf_config(_config().to_dict()))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 32, generator=g, dtype=torch.float64), torch.randn(1, 1, 1, 32, generator=g, dtype=torch.float64)

    def dot(a: int, b: int, rope) -> float:
        cq, sq = rope_cos_sin(inv_freq.double(), torch.tensor([[a]]), dtype=torch.float64)
        ck, sk = rope_cos_sin(inv_freq.double(), torch.tensor([[b]]), dtype=torch.float64)
        return float((rope(q, cq, sq) * rope(k, ck, sk)).sum())

    for rope in (apply_rope_half, apply_rope_interleaved):
        assert abs(dot(m, n, rope) - dot(m + shift, n + shift, rope)) < 1e-8


def test_interleaved_layout_is_the_half_split_one_permuted():
    """Rotating interleaved pairs = permuting features to half-split, rotating, permuting back."""
    inv_freq, _ = rope_inv_freq(from_hf_config(_config().to_dict()))
    cos, sin = rope_cos_sin(inv_freq, torch.tensor([[0, 3, 77]]))
    x = torch.randn(2, 4, 3, 32, generator=torch.Generator().manual_seed(3))
    to_half = torch.cat((torch.arange(0, 32, 2), torch.arange(1, 32, 2)))  # [a0 a1 .. | b0 b1 ..] from [a0 b0 a1 b1 ..]
    expected = torch.empty_like(x)
    expected[..., to_half] = apply_rope_half(x[..., to_half], cos, sin)
    assert torch.allclose(apply_rope_interleaved(x, cos, sin), expected, atol=1e-6, rtol=0)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 1000), n=st.integers(0, 1000), shift=st.integers(0, 1000))
def test_xpos_keeps_relativity_and_decays_by_zeta_to_the_distance(m, n, shift):
    d = 16
    inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, d, generator=g, dtype=torch.float64), torch.randn(1, 1, 1, d, generator=g, dtype=torch.float64)

    def dot(a: int, b: int) -> float:
        cq, sq = rope_cos_sin(inv_freq, torch.tensor([[a]]), dtype=torch.float64)
        ck, sk = rope_cos_sin(inv_freq, torch.tensor([[b]]), dtype=torch.float64)
        xq, _ = apply_xpos(q, q, cq, sq, xpos_scale(d, torch.tensor([[a]]), dtype=torch.float64))
        _, xk = apply_xpos(k, k, ck, sk, xpos_scale(d, torch.tensor([[b]]), dtype=torch.float64))
        return float((xq * xk).sum())

    assert dot(m, n) == pytest.approx(dot(m + shift, n + shift), rel=1e-9, abs=1e-12)
    # with q = k = the same unit pair in slot i, the score is zeta_i^((m - n)/512): a decay, not a rotation
    unit = torch.zeros(1, 1, 1, d, dtype=torch.float64)
    unit[..., 0] = 1.0
    zeta0 = 0.4 / 1.4
    s_m = xpos_scale(d, torch.tensor([[m]]), dtype=torch.float64)
    s_n = xpos_scale(d, torch.tensor([[n]]), dtype=torch.float64)
    ones, zeros = torch.ones(1, 1, 1, d, dtype=torch.float64), torch.zeros(1, 1, 1, d, dtype=torch.float64)
    xq, _ = apply_xpos(unit, unit, ones, zeros, s_m)
    _, xk = apply_xpos(unit, unit, ones, zeros, s_n)
    assert float((xq * xk).sum()) == pytest.approx(zeta0 ** ((m - n) / 512), rel=1e-9)


def test_sinusoidal_table_equals_distilbert_and_the_formula():
    out = torch.empty(64, 24)
    create_sinusoidal_embeddings(64, 24, out)
    table = sinusoidal_table(64, 24)
    assert torch.allclose(table, out, atol=1e-6, rtol=0)
    p, i = 37, 5  # PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(...)
    assert float(table[p, 2 * i]) == pytest.approx(math.sin(p / 10000 ** (2 * i / 24)), abs=1e-6)
    assert float(table[p, 2 * i + 1]) == pytest.approx(math.cos(p / 10000 ** (2 * i / 24)), abs=1e-6)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (16, 64)])
def test_t5_buckets_equal_transformers_for_every_distance(bidirectional, num_buckets, max_distance):
    distances = torch.arange(-1024, 1025)
    expected = T5Attention._relative_position_bucket(distances, bidirectional, num_buckets, max_distance)
    assert torch.equal(t5_relative_bucket(distances, bidirectional, num_buckets, max_distance), expected)


@pytest.mark.parametrize("is_decoder", [False, True])
def test_t5_relative_bias_equals_transformers_compute_bias(is_decoder):
    config = T5Config(d_model=32, d_kv=8, num_heads=4, relative_attention_num_buckets=32,
                      relative_attention_max_distance=128, is_decoder=is_decoder)
    hf = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
    ours = T5RelativeBias(32, 4, 128, bidirectional=not is_decoder)
    ours.relative_attention_bias.load_state_dict(hf.relative_attention_bias.state_dict())
    expected = hf.compute_bias(5, 300, past_seen_tokens=295)  # 5 queries after 295 cached keys
    with torch.no_grad():
        assert torch.equal(ours(torch.arange(295, 300), torch.arange(300)), expected)


@pytest.mark.parametrize("n_heads", [8, 12, 16, 20])
def test_alibi_slopes_equal_bloom(n_heads):
    ones = torch.ones(1, 5)
    bloom = build_alibi_tensor(ones, n_heads, torch.float32).view(n_heads, 5)  # slope_h * key position
    assert torch.allclose(bloom[:, 1], alibi_slopes(n_heads), rtol=1e-6, atol=0)


@pytest.mark.parametrize("n_heads", [8, 16])
def test_alibi_slopes_are_the_papers_geometric_sequence(n_heads):
    expected = torch.tensor([2.0 ** (-8 * h / n_heads) for h in range(1, n_heads + 1)])
    assert torch.allclose(alibi_slopes(n_heads), expected, rtol=1e-6, atol=0)


def test_alibi_twelve_heads_interleave_the_sixteen_head_slopes():
    """Press et al.: for 12 heads, the 8-head slopes, then the odd-numbered slopes of 16 heads."""
    assert torch.allclose(alibi_slopes(12), torch.cat((alibi_slopes(8), alibi_slopes(16)[0:8:2])), rtol=1e-6, atol=0)


def test_alibi_bias_is_slope_times_distance():
    slopes = alibi_slopes(4)
    bias = alibi_bias(slopes, torch.arange(3, 6), torch.arange(6))  # [1, 4, 3, 6]
    for h, i, j in [(0, 0, 0), (1, 2, 5), (3, 1, 0), (2, 0, 3)]:
        assert float(bias[0, h, i, j]) == pytest.approx(float(slopes[h]) * (j - (3 + i)))
    assert torch.equal(alibi_bias(slopes, torch.arange(3), torch.arange(3), bidirectional=True)[0, 0],
                       -float(slopes[0]) * (torch.arange(3)[None] - torch.arange(3)[:, None]).abs().float())


def test_shaw_relative_clips_distances():
    shaw = ShawRelative(max_distance=2, d_head=4)
    a_key, a_value = shaw(torch.arange(6), torch.arange(6))  # [6, 6, 4]
    table = shaw.key.weight
    assert torch.equal(a_key[0, 5], table[4]) and torch.equal(a_key[0, 2], table[4])  # j - i = 5, 2 -> clipped to 2
    assert torch.equal(a_key[5, 0], table[0]) and torch.equal(a_key[3, 2], table[1])  # -5 -> -2; -1
    assert torch.equal(a_value[4, 4], shaw.value.weight[2])  # distance 0
    with pytest.raises(SpecError):
        ShawRelative(0, 4)
