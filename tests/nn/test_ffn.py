"""FFNs against transformers: MLP (DistilBERT, GPT-2), SwiGLU (LLaMA), GeGLU (T5), MoE and its loss (Mixtral)."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    DistilBertConfig,
    GPT2Config,
    LlamaConfig,
    MixtralConfig,
    T5Config,
)
from transformers.models.distilbert.modeling_distilbert import FFN as DistilBertFFN
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
from transformers.models.llama.modeling_llama import LlamaMLP
from transformers.models.mixtral.modeling_mixtral import (
    MixtralSparseMoeBlock,
    load_balancing_loss_func,
)
from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

from llmkit.calc.params import count_params
from llmkit.nn.ffn import GLU, MLP, MoE, build_ffn, load_balancing_loss
from llmkit.spec import ModelSpec, from_hf_config

X = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(0))


def _spec(**extra) -> ModelSpec:
    base = dict(name="tiny", family="decoder", d_model=32, n_layers=2, n_heads=4, vocab_size=64, d_ff=80)
    return ModelSpec(**{**base, **extra})


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_mlp_equals_distilbert_ffn(activation):
    hf = DistilBertFFN(DistilBertConfig(dim=32, hidden_dim=80, activation=activation)).eval()
    _randomise(hf)
    ours = MLP(_spec(activation=activation, ffn_bias=True))
    ours.load_state_dict({"up.weight": hf.lin1.weight, "up.bias": hf.lin1.bias,
                          "down.weight": hf.lin2.weight, "down.bias": hf.lin2.bias})
    with torch.no_grad():
        assert torch.allclose(ours(X), hf(X), atol=1e-6, rtol=0)


def test_mlp_gelu_tanh_equals_gpt2_mlp():
    hf = GPT2MLP(80, GPT2Config(n_embd=32, activation_function="gelu_new")).eval()
    _randomise(hf)
    ours = MLP(_spec(activation="gelu_tanh", ffn_bias=True))
    ours.load_state_dict({"up.weight": hf.c_fc.weight.T, "up.bias": hf.c_fc.bias,  # Conv1D stores [in, out]
                          "down.weight": hf.c_proj.weight.T, "down.bias": hf.c_proj.bias})
    with torch.no_grad():
        assert torch.allclose(ours(X), hf(X), atol=1e-6, rtol=0)


def test_swiglu_equals_transformers():
    config = LlamaConfig(hidden_size=32, intermediate_size=80, num_attention_heads=4, num_hidden_layers=1)
    hf = LlamaMLP(config)
    ours = GLU(from_hf_config(config.to_dict()))
    ours.load_state_dict({f"{n}.weight": getattr(hf, f"{n}_proj").weight for n in ("gate", "up", "down")})
    with torch.no_grad():
        assert torch.allclose(ours(X), hf(X), atol=1e-6, rtol=0)


def test_geglu_equals_t5_gated_ffn():
    hf = T5DenseGatedActDense(T5Config(d_model=32, d_ff=80, dense_act_fn="gelu_new")).eval()
    _randomise(hf)
    ours = build_ffn(_spec(ffn_kind="geglu", activation="gelu_tanh"))
    assert isinstance(ours, GLU)
    ours.load_state_dict({"gate.weight": hf.wi_0.weight, "up.weight": hf.wi_1.weight, "down.weight": hf.wo.weight})
    with torch.no_grad():
        assert torch.allclose(ours(X), hf(X), atol=1e-6, rtol=0)


def _mixtral_pair(n_experts: int = 6, k: int = 2) -> tuple[MixtralSparseMoeBlock, MoE]:
    config = MixtralConfig(hidden_size=32, intermediate_size=40, num_local_experts=n_experts,
                           num_experts_per_tok=k, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=1)
    hf = MixtralSparseMoeBlock(config).eval()
    _randomise(hf, seed=k)
    ours = build_ffn(from_hf_config(config.to_dict()))
    assert isinstance(ours, MoE)
    ours.load_state_dict({"router.weight": hf.gate.weight, "gate_up": hf.experts.gate_up_proj,
                          "down": hf.experts.down_proj})
    return hf, ours


@pytest.mark.parametrize("n_experts,k", [(6, 2), (4, 1), (5, 3)])
def test_moe_routing_and_output_equal_mixtral(n_experts, k):
    hf, ours = _mixtral_pair(n_experts, k)
    tokens = X.reshape(-1, 32)
    with torch.no_grad():
        hf_logits, hf_weights, hf_experts = hf.gate(tokens)
        logits, weights, experts = ours.route(tokens)
        assert torch.equal(experts, hf_experts) and torch.allclose(logits, hf_logits, atol=1e-6, rtol=0)
        assert torch.allclose(weights, hf_weights, atol=1e-6, rtol=0)
        assert torch.allclose(weights.sum(-1), torch.ones(len(tokens)), atol=1e-6)  # renormalised top-k
        assert torch.allclose(ours(X), hf(X), atol=1e-6, rtol=0)


def test_load_balancing_loss_equals_transformers():
    g = torch.Generator().manual_seed(1)
    layers = tuple(torch.randn(21, 8, generator=g) * 2 for _ in range(3))
    for k in (1, 2):
        expected = load_balancing_loss_func(layers, num_experts=8, top_k=k)
        assert torch.allclose(load_balancing_loss(layers, k, 8), expected, atol=1e-6, rtol=0)
    one_layer = load_balancing_loss_func((layers[0],), num_experts=8, top_k=2)
    assert torch.allclose(load_balancing_loss(layers[0], 2, 8), one_layer, atol=1e-6, rtol=0)


def test_moe_keeps_router_logits_for_the_loss():
    hf, ours = _mixtral_pair()
    with torch.no_grad():
        ours(X)
    assert torch.allclose(ours.router_logits, hf.gate(X.reshape(-1, 32))[0], atol=1e-6, rtol=0)


def test_moe_active_parameters_equal_the_planner():
    config = MixtralConfig(vocab_size=64, hidden_size=32, intermediate_size=40, num_local_experts=8,
                           num_experts_per_tok=2, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3)
    spec = from_hf_config(config.to_dict())
    moe = build_ffn(spec)
    counted = count_params(spec)
    moe_total = sum(p.numel() for p in moe.parameters())
    rest = counted.total - spec.n_layers * moe_total  # everything that is not an MoE block
    assert spec.n_layers * moe_total == counted.by_component["experts"] + counted.by_component["router"]
    assert rest + spec.n_layers * moe.active_params() == counted.active
