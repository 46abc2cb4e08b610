"""RoPE against transformers' LlamaRotaryEmbedding, and its relative-position property."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from llmkit.nn.position import apply_rope_half, rope_cos_sin, rope_inv_freq
from llmkit.spec import from_hf_config


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


def test_linear_scaling_equals_transformers():
    config = _config(rope_scaling={"rope_type": "linear", "factor": 4.0})
    hf_rope = LlamaRotaryEmbedding(config)
    inv_freq, scale = rope_inv_freq(from_hf_config(config.to_dict()))
    assert torch.allclose(inv_freq, hf_rope.inv_freq, rtol=1e-6, atol=0) and scale == hf_rope.attention_scaling


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(0, 2000))
def test_rotated_dot_product_depends_only_on_distance(m, n, shift):
    inv_freq, _ = rope_inv_freq(from_hf_config(_config().to_dict()))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 32, generator=g, dtype=torch.float64), torch.randn(1, 1, 1, 32, generator=g, dtype=torch.float64)

    def dot(a: int, b: int) -> float:
        cq, sq = rope_cos_sin(inv_freq.double(), torch.tensor([[a]]))
        ck, sk = rope_cos_sin(inv_freq.double(), torch.tensor([[b]]))
        return float((apply_rope_half(q, cq.double(), sq.double()) * apply_rope_half(k, ck.double(), sk.double())).sum())

    assert abs(dot(m, n) - dot(m + shift, n + shift)) < 1e-4
