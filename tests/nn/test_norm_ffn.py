"""RMSNorm and the SwiGLU FFN against transformers' LLaMA modules."""

from __future__ import annotations

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm

from llmkit.nn.ffn import GLU
from llmkit.nn.norm import RMSNorm
from llmkit.spec import from_hf_config


def test_rms_norm_equals_transformers():
    hf = LlamaRMSNorm(48, eps=1e-5)
    ours = RMSNorm(48, eps=1e-5)
    with torch.no_grad():
        hf.weight.uniform_(0.5, 1.5)
        ours.weight.copy_(hf.weight)
    x = torch.randn(2, 5, 48, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(ours(x), hf(x), atol=1e-6, rtol=0)
    assert torch.allclose(ours(x.bfloat16()).float(), hf(x.bfloat16()).float(), atol=1e-2, rtol=0)


def test_swiglu_equals_transformers():
    config = LlamaConfig(hidden_size=32, intermediate_size=80, num_attention_heads=4, num_hidden_layers=1)
    hf = LlamaMLP(config)
    ours = GLU(from_hf_config(config.to_dict()))
    ours.load_state_dict({f"{n}.weight": getattr(hf, f"{n}_proj").weight for n in ("gate", "up", "down")})
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(x), hf(x), atol=1e-6, rtol=0)
