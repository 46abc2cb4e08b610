"""llmkit.calc.params against the oracle: transformers modules built on the meta device from the zoo's configs."""

from __future__ import annotations

from functools import cache

import pytest
import torch
import transformers
from torch import nn
from transformers.pytorch_utils import Conv1D

from llmkit import zoo
from llmkit.calc.params import COMPONENTS, count_params, tensors, transformers_class
from llmkit.spec import from_hf_config

PUBLISHED = [n for n in zoo.names() if zoo.entry(n).published]


def oracle_config(name: str) -> transformers.PretrainedConfig:
    """The transformers config of a zoo model, built from the same published values."""
    cfg = dict(zoo.entry(name).config)
    if name == "phi-3-mini-128k":
        # The zoo leaves out LongRoPE's 2 x 48 factors (see the entry's `omitted`); transformers refuses a
        # longrope without them. RoPE factors are not parameters, so the module's shapes are unaffected.
        cfg.pop("rope_scaling")
    model_type = cfg.pop("model_type")
    return transformers.CONFIG_MAPPING[model_type](**cfg)


@cache
def oracle(name: str) -> nn.Module:
    """The transformers module of the counting convention, on the meta device (no memory), built once."""
    with torch.device("meta"):
        return getattr(transformers, transformers_class(zoo.get(name)))(oracle_config(name))


def forced_tie(name: str) -> bool:
    """transformers 5 ties T5's LM head even when the published config says tie_word_embeddings: false."""
    cfg = zoo.entry(name).config
    return cfg["model_type"] == "t5" and cfg.get("tie_word_embeddings") is False


@pytest.mark.parametrize("name", PUBLISHED)
def test_inventory_is_transformers_named_parameters(name):
    model = oracle(name)
    expected = {(n, tuple(p.shape)) for n, p in model.named_parameters()}
    ours = [(t.name, t.shape) for t in tensors(zoo.get(name))]
    assert len(ours) == len(set(ours)), "a tensor is listed twice"
    if forced_tie(name):  # the published untied head, which transformers 5 drops
        d, v = model.config.d_model, model.config.vocab_size
        expected.add(("lm_head.weight", (v, d)))
    assert set(ours) == expected


@pytest.mark.parametrize("name", PUBLISHED)
def test_total_is_the_transformers_count(name):
    model = oracle(name)
    expected = sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once
    if forced_tie(name):
        expected += model.config.vocab_size * model.config.d_model
    count = count_params(zoo.get(name))
    assert count.total == expected
    assert sum(count.by_component.values()) == count.total
    assert set(count.by_component) <= set(COMPONENTS)


@pytest.mark.parametrize("name", PUBLISHED)
def test_non_embedding_is_transformers_exclude_embeddings_minus_untied_head(name):
    """Kaplan's N: transformers drops every nn.Embedding (tokens, positions, token types, relative tables)."""
    model = oracle(name)
    spec = zoo.get(name)
    head = spec.vocab_size * spec.d_model if not spec.tied_embeddings else 0
    expected = model.num_parameters(exclude_embeddings=True) - (0 if forced_tie(name) else head)
    assert count_params(spec).non_embedding == expected


@pytest.mark.parametrize("name", ["llama-2-7b", "bert-base-uncased", "gpt2", "t5-base", "bart-large",
                                  "phi-3-mini-4k", "mixtral-8x7b", "qwen2-72b", "deberta-v3-base",
                                  "distilbert-base-uncased"])
def test_linear_weights_are_the_linear_modules(name):
    model = oracle(name)
    linear = {f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}
    ours = {t.name: t for t in tensors(zoo.get(name)) if t.is_linear_weight}
    if forced_tie(name):
        linear.pop("lm_head.weight", None)
    assert set(ours) == set(linear) - ({"lm_head.weight"} if zoo.get(name).tied_embeddings else set())
    for n, t in ours.items():
        m = linear[n]
        in_out = (m.nx, m.nf) if isinstance(m, Conv1D) else (m.in_features, m.out_features)
        assert t.in_out == in_out, n


def test_mixtral_active_params_are_router_plus_two_of_eight_experts():
    model = oracle("mixtral-8x7b")
    cfg = model.config
    experts = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    per_token = sum(p.numel() for p in model.parameters()) - experts * (
        cfg.num_local_experts - cfg.num_experts_per_tok) // cfg.num_local_experts
    count = count_params(zoo.get("mixtral-8x7b"))
    assert count.active == per_token
    assert round(count.total / 1e9, 1) == 46.7  # Jiang et al. 2024: "47B parameters"
    assert round(count.active / 1e9, 1) == 12.9  # "uses only 13B active parameters"
    # The sheet's "8B active" is wrong by more than half again; its "~47B" total holds.
    assert count.active / 8e9 > 1.5


def test_dense_active_equals_total():
    count = count_params(zoo.get("llama-2-7b"))
    assert count.active == count.total


def test_sheet_bert_base_example_approximation():
    """Sheet section 2: 30522 x 768 + 12 x 12 x 768^2 ~ 108M, against the exact BertModel count."""
    count = count_params(zoo.get("bert-base"))
    assert round(count.approx_Vd_12Ld2 / 1e6) == 108
    assert count.approx_12Ld2 == 12 * 12 * 768**2
    assert count.approx_Vd_12Ld2_error == pytest.approx(count.approx_Vd_12Ld2 / count.total - 1)
    assert abs(count.approx_Vd_12Ld2_error) < 0.02  # the sheet's "≈ 108M ✓" is within 2% of 109,482,240


def test_approximation_counts_all_blocks_of_an_encoder_decoder():
    spec = zoo.get("t5-base")
    assert count_params(spec).approx_12Ld2 == 12 * (12 + 12) * 768**2


def test_smollm2_counts_the_tied_head_once():
    count = count_params(zoo.get("smollm2"))
    assert count.total == 134_515_008
    assert "lm_head" not in count.by_component


def test_gpt3_is_within_a_percent_of_the_papers_175b():
    assert count_params(zoo.get("gpt-3")).total == pytest.approx(175.0e9, rel=0.01)


def test_convention_names_the_class_and_the_head():
    assert count_params(zoo.get("llama-2-7b")).convention.startswith("LlamaForCausalLM (untied LM head")
    assert "pooler included" in count_params(zoo.get("bert-base")).convention
    assert "counted once" in count_params(zoo.get("gpt2")).convention


# Families and options no zoo model exercises, on tiny configs: parsed by llmkit, built by transformers.
TINY = {
    "deberta-unshared-keys": {"model_type": "deberta-v2", "hidden_size": 16, "num_hidden_layers": 2,
                              "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 50,
                              "max_position_embeddings": 20, "relative_attention": True, "share_att_key": False,
                              "pos_att_type": "p2c|c2p", "position_biased_input": True, "type_vocab_size": 2},
    "deberta-absolute": {"model_type": "deberta-v2", "hidden_size": 16, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "intermediate_size": 32, "vocab_size": 50,
                         "max_position_embeddings": 20},
    "t5-relu-uneven": {"model_type": "t5", "d_model": 16, "num_layers": 2, "num_decoder_layers": 3, "num_heads": 2,
                       "d_kv": 4, "d_ff": 32, "vocab_size": 50},
    "qwen2-tied": {"model_type": "qwen2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "intermediate_size": 32, "vocab_size": 50,
                   "max_position_embeddings": 64, "tie_word_embeddings": True},
    "llama-biases-head-dim": {"model_type": "llama", "hidden_size": 16, "num_hidden_layers": 1,
                              "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
                              "intermediate_size": 32, "vocab_size": 50, "max_position_embeddings": 64,
                              "attention_bias": True, "mlp_bias": True},
    "distilbert-sinusoidal": {"model_type": "distilbert", "dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32,
                              "vocab_size": 50, "max_position_embeddings": 20, "sinusoidal_pos_embds": True},
    "gpt2-n-inner": {"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2, "n_inner": 24,
                     "vocab_size": 50, "n_positions": 20},
}


@pytest.mark.parametrize("case", sorted(TINY))
def test_tiny_variants_match_transformers(case):
    cfg = dict(TINY[case])
    spec = from_hf_config(cfg)
    model_type = cfg.pop("model_type")
    with torch.device("meta"):
        model = getattr(transformers, transformers_class(spec))(transformers.CONFIG_MAPPING[model_type](**cfg))
    assert {(t.name, t.shape) for t in tensors(spec)} == {(n, tuple(p.shape)) for n, p in model.named_parameters()}
