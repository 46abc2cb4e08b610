"""Tiny random transformers models (the oracle) and the same weights in llmkit, built once per session."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from llmkit.io.hf import llama_state_dict
from llmkit.load import build_model
from llmkit.spec import from_hf_config

TINY = dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
)
CONFIGS = {
    "llama-gqa": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=False)),
    "llama-tied-mqa": (LlamaConfig, LlamaForCausalLM, dict(tie_word_embeddings=True, num_key_value_heads=1)),
    "qwen2-bias": (Qwen2Config, Qwen2ForCausalLM, dict(tie_word_embeddings=False)),
}


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    config_cls, model_cls, extra = CONFIGS[name]
    torch.manual_seed(0)
    config = config_cls(**{**TINY, **extra})
    hf = model_cls(config).eval()
    with torch.no_grad():  # larger weights than the default init, so logits are far from ties
        for p in hf.parameters():
            p.normal_(0.0, 0.15) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    spec = from_hf_config(config.to_dict(), name=name)
    return hf, build_model(spec, llama_state_dict(hf.state_dict(), spec))


@pytest.fixture(scope="session", params=list(CONFIGS))
def tiny_pair(request) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(transformers model, llmkit model) with identical random weights."""
    return _pair(request.param)
