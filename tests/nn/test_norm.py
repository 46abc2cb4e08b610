"""RMSNorm against transformers' LLaMA module."""

from __future__ import annotations

import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from llmkit.nn.norm import RMSNorm


def test_rms_norm_equals_transformers():
    hf = LlamaRMSNorm(48, eps=1e-5)
    ours = RMSNorm(48, eps=1e-5)
    with torch.no_grad():
        hf.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(hf.weight)
    x = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(ours(x), hf(x), atol=1e-6, rtol=0)
    assert torch.allclose(ours(x.bfloat16()).float(), hf(x.bfloat16()).float(), atol=1e-2, rtol=0)


def test_t5_layer_norm_is_rms_norm():
    """T5's "LayerNorm" scales by the root mean square only (no centring, no bias): our RMSNorm."""
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    hf, ours = T5LayerNorm(48, eps=1e-6), RMSNorm(48, eps=1e-6)
    with torch.no_grad():
        hf.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(hf.weight)
    x = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(1)) + 2.0  # a non-zero mean matters
    assert torch.allclose(ours(x), hf(x), atol=1e-6, rtol=0)


def test_build_norm_follows_the_spec():
    from llmkit.nn.norm import LayerNorm, build_norm
    from llmkit.spec import ModelSpec

    base = dict(name="n", family="encoder", d_model=16, n_layers=1, n_heads=2, vocab_size=8, d_ff=32)
    bert = build_norm(ModelSpec(**base, norm="layernorm", norm_bias=True, norm_eps=1e-12))
    assert isinstance(bert, LayerNorm) and bert.bias is not None and bert.eps == 1e-12
    x = torch.randn(3, 16)
    assert torch.allclose(bert(x), torch.nn.functional.layer_norm(x, (16,), eps=1e-12), atol=1e-6)
    assert build_norm(ModelSpec(**base, norm="layernorm", norm_bias=False)).bias is None
    assert isinstance(build_norm(ModelSpec(**base, norm="rmsnorm")), RMSNorm)
