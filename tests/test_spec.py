"""ModelSpec: validation, parsing HF configs (against transformers' config classes) and GGUF metadata (against gguf)."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from hypothesis import given
from hypothesis import strategies as st

from llmkit import zoo
from llmkit.calc.params import count_params
from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec, RopeScaling, SpecError, from_gguf_metadata, from_hf_config
from llmkit.io.gguf_header import read_gguf_header

BASE = dict(name="t", family="decoder", d_model=64, n_layers=2, n_heads=4, vocab_size=100, d_ff=128)


def test_spec_error_is_a_user_error():
    assert issubclass(SpecError, LlmkitError)


# -- validation: each impossible shape names its field ------------------------------------------


@pytest.mark.parametrize("field", ["d_model", "n_layers", "n_heads", "vocab_size", "d_ff", "max_positions"])
@pytest.mark.parametrize("value", [0, -3])
def test_non_positive_sizes_name_the_field(field, value):
    with pytest.raises(SpecError, match=field):
        ModelSpec(**{**BASE, field: value})


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"head_dim": 0}, "head_dim"),
        ({"n_kv_heads": 0}, "n_kv_heads"),
        ({"sliding_window": 0}, "sliding_window"),
        ({"n_experts": -1}, "n_experts"),
        ({"type_vocab_size": -1}, "type_vocab_size"),
        ({"n_layers": 2.5}, "n_layers"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"rotary_fraction": 1.5}, "rotary_fraction"),
        ({"position": "rope", "rope_theta": -1.0}, "rope_theta"),
    ],
)
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(SpecError, match=field):
        ModelSpec(**{**BASE, **changes})


@pytest.mark.parametrize(
    "field, value",
    [("family", "decoder-only"), ("ffn_kind", "swish"), ("activation", "tanh"), ("position", "absolute"),
     ("norm", "batchnorm"), ("norm_placement", "middle")],
)
def test_bad_enum_values_list_the_choices(field, value):
    with pytest.raises(SpecError, match=f"{field} must be one of"):
        ModelSpec(**{**BASE, field: value})


def test_heads_not_dividing_d_model_need_an_explicit_head_dim():
    with pytest.raises(SpecError, match="n_heads=3 does not divide d_model=64; give head_dim"):
        ModelSpec(**{**BASE, "n_heads": 3})
    assert ModelSpec(**{**BASE, "n_heads": 3, "head_dim": 32}).d_head == 32


def test_kv_heads_must_divide_heads():
    with pytest.raises(SpecError, match="n_kv_heads=3 does not divide n_heads=4"):
        ModelSpec(**{**BASE, "n_kv_heads": 3})


def test_experts_per_token_within_experts():
    with pytest.raises(SpecError, match="experts_per_token"):
        ModelSpec(**{**BASE, "n_experts": 8, "experts_per_token": 9})
    with pytest.raises(SpecError, match="experts_per_token"):
        ModelSpec(**{**BASE, "experts_per_token": 2})


def test_stack_layer_counts_match_the_family():
    with pytest.raises(SpecError, match="n_encoder_layers must be positive"):
        ModelSpec(**{**BASE, "family": "encoder-decoder"})
    with pytest.raises(SpecError, match="n_encoder_layers is only for encoder-decoders"):
        ModelSpec(**{**BASE, "n_encoder_layers": 2})


@given(d_head=st.integers(1, 64), n_heads=st.integers(1, 16), group=st.integers(1, 8))
def test_gqa_groups_are_whole(d_head, n_heads, group):
    spec = ModelSpec(**{**BASE, "d_model": d_head * n_heads * group, "n_heads": n_heads * group, "n_kv_heads": n_heads})
    assert spec.kv_heads * group == spec.n_heads
    assert spec.d_head == d_head
    assert spec.attention_kind == ("MHA" if group == 1 else "MQA" if n_heads == 1 else "GQA")


@given(d_model=st.integers(1, 512), n_heads=st.integers(1, 64))
def test_construction_fails_exactly_when_heads_do_not_divide(d_model, n_heads):
    if d_model % n_heads:
        with pytest.raises(SpecError):
            ModelSpec(**{**BASE, "d_model": d_model, "n_heads": n_heads})
    else:
        assert ModelSpec(**{**BASE, "d_model": d_model, "n_heads": n_heads}).d_head * n_heads == d_model


# -- from_hf_config round-trips through transformers' config classes ----------------------------------

FAMILY_MODELS = {
    "bert": "bert-base-uncased", "roberta": "roberta-base", "distilbert": "distilbert-base-uncased",
    "deberta-v2": "deberta-v3-base", "gpt2": "gpt2", "t5": "flan-t5-base", "bart": "bart-large",
    "llama": "llama-3.1-405b", "mistral": "mistral-7b", "mixtral": "mixtral-8x7b", "phi3": "phi-3-mini-4k",
    "qwen2": "qwen2-72b",
}
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "silu": "silu", "relu": "relu"}


def _first(cfg, *names):
    for n in names:
        if getattr(cfg, n, None) is not None:
            return getattr(cfg, n)
    return None


def oracle_facts(cfg: transformers.PretrainedConfig) -> dict:
    """What transformers' config object says, through its own attribute names and aliases."""
    d, h = cfg.hidden_size, cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    return {
        "d_model": d, "n_heads": h, "vocab_size": cfg.vocab_size,
        "n_stack_layers": cfg.num_hidden_layers,  # the encoder stack for encoders and encoder-decoders
        "kv_heads": _first(cfg, "num_key_value_heads") or h,
        "d_head": _first(cfg, "head_dim", "d_kv") or d // h,
        "d_ff": _first(cfg, "intermediate_size", "hidden_dim", "d_ff", "encoder_ffn_dim", "n_inner") or 4 * d,
        "activation": ACTIVATIONS[_first(cfg, "dense_act_fn", "hidden_act", "activation_function", "activation")],
        # DistilBERT hard-codes eps=1e-12 in its modules; BART uses nn.LayerNorm's default 1e-5.
        "norm_eps": _first(cfg, "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon")
        or {"distilbert": 1e-12}.get(cfg.model_type, 1e-5),
        "n_experts": _first(cfg, "num_local_experts") or 0,
        "experts_per_token": _first(cfg, "num_experts_per_tok") or 0,
        "sliding_window": _first(cfg, "sliding_window"),
        "rope_theta": rope.get("rope_theta", 10000.0),
        "rope_scaling": None if rope.get("rope_type", "default") == "default" else rope["rope_type"],
    }


def spec_facts(spec: ModelSpec) -> dict:
    return {
        "d_model": spec.d_model, "n_heads": spec.n_heads, "vocab_size": spec.vocab_size,
        "n_stack_layers": spec.n_encoder_layers or spec.n_layers, "kv_heads": spec.kv_heads,
        "d_head": spec.d_head, "d_ff": spec.d_ff, "activation": spec.activation, "norm_eps": spec.norm_eps,
        "n_experts": spec.n_experts, "experts_per_token": spec.experts_per_token,
        "sliding_window": spec.sliding_window, "rope_theta": spec.rope_theta,
        "rope_scaling": spec.rope_scaling.kind if spec.rope_scaling else None,
    }


@pytest.mark.parametrize("model_type", sorted(FAMILY_MODELS))
def test_from_hf_config_agrees_with_transformers_config_class(model_type):
    published = dict(zoo.entry(FAMILY_MODELS[model_type]).config)
    cfg = transformers.CONFIG_MAPPING[model_type](**{k: v for k, v in published.items() if k != "model_type"})
    # Parse what transformers writes back (transformers 5 keys: rope_parameters, ...), not only the published file.
    spec = from_hf_config(cfg.to_dict())
    assert spec.hf_model_type == model_type
    assert spec_facts(spec) == oracle_facts(cfg)
    if spec.family != "encoder":
        # transformers 5 forces T5 configs to tie_word_embeddings=true and records an untied v1.1 / FLAN-T5
        # head as scale_decoder_outputs=false: that flag is the published tie.
        assert spec.tied_embeddings == getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings)
        assert spec.tied_embeddings == published.get("tie_word_embeddings", True)


def test_published_and_round_tripped_configs_give_the_same_spec():
    """The published file (transformers 4 keys, e.g. rope_scaling) and transformers 5's to_dict agree."""
    for name in ("llama-3.1-405b", "mixtral-8x7b", "qwen2-72b", "bert-base", "gpt2"):
        published = dict(zoo.entry(name).config)
        model_type = published.pop("model_type")
        cfg = transformers.CONFIG_MAPPING[model_type](**published)
        a = from_hf_config(zoo.entry(name).config, name=name)
        b = from_hf_config(cfg.to_dict(), name=name)
        assert a == b, name


def test_llama3_rope_scaling_is_parsed():
    s = zoo.get("llama-3.1-405b").rope_scaling
    assert (s.kind, s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_positions) == (
        "llama3", 8.0, 1.0, 4.0, 8192)


def test_deberta_v3_disentangled_attention():
    spec = zoo.get("deberta-v3-base")
    assert spec.position == "relative" and spec.relative_buckets == 256
    assert spec.disentangled.pos_att_type == ("p2c", "c2p")
    assert spec.disentangled.share_att_key and spec.disentangled.norm_rel_ebd
    assert not spec.disentangled.position_biased_input


@pytest.mark.parametrize(
    "model, field",
    [("bert-base", "hidden_size"), ("distilbert", "dim"), ("gpt2", "n_embd"), ("t5-base", "d_model"),
     ("bart-large", "encoder_layers"), ("llama-2-7b", "intermediate_size"), ("mixtral", "vocab_size"),
     ("deberta-v3-base", "num_attention_heads"), ("phi-3-mini-4k", "max_position_embeddings")],
)
def test_missing_required_field_is_named(model, field):
    cfg = {k: v for k, v in zoo.entry(model).config.items() if k != field}
    with pytest.raises(SpecError, match=f"missing required field .*'{field}'"):
        from_hf_config(cfg)


def test_config_without_or_with_unknown_model_type():
    with pytest.raises(SpecError, match="missing required field 'model_type'"):
        from_hf_config({"hidden_size": 8})
    with pytest.raises(SpecError, match="model_type 'mamba' is not supported .*llama"):
        from_hf_config({"model_type": "mamba"})


def test_malformed_value_is_a_spec_error():
    cfg = {**zoo.entry("llama-2-7b").config, "hidden_size": "4096"}
    with pytest.raises(SpecError, match="d_model must be a positive integer"):
        from_hf_config(cfg)


def test_config_files_and_directories(tmp_path, minilm_dir):
    spec = from_hf_config(minilm_dir)  # a directory holding config.json
    assert (spec.d_model, spec.n_layers, spec.n_heads, spec.vocab_size) == (384, 6, 12, 30522)
    assert spec == zoo.get("all-MiniLM-L6-v2").with_(name=spec.name, source="")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match=f"{bad}: not valid JSON"):
        from_hf_config(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(SpecError, match="expected a JSON object"):
        from_hf_config(bad)
    with pytest.raises(SpecError, match="no such file"):
        from_hf_config(tmp_path / "missing.json")


# -- from_gguf_metadata on the real SmolLM2 GGUF ---------------------------------------------------------
# The header is read with llmkit's pure-Python reader, itself checked field by field against gguf's
# GGUFReader in tests/io/test_gguf.py (GGUFReader takes ~13 s on this file; it runs once there).


@pytest.fixture(scope="module")
def smollm2_oracle(smollm2_gguf):
    header = read_gguf_header(smollm2_gguf)
    return dict(header.metadata), header.tensor_names


def test_from_gguf_metadata_smollm2(smollm2_oracle):
    metadata, names = smollm2_oracle
    spec = from_gguf_metadata(metadata, names)
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.kv_heads, spec.vocab_size) == (30, 576, 9, 3, 49152)
    assert spec.tied_embeddings and spec.d_head == 64 and spec.d_ff == 1536
    assert spec.max_positions == 8192 and spec.rope_theta == 100000.0
    assert spec.norm_eps == pytest.approx(1e-5)


def test_gguf_spec_counts_like_llama_for_causal_lm(smollm2_oracle):
    spec = from_gguf_metadata(*smollm2_oracle)
    cfg = transformers.LlamaConfig(
        hidden_size=spec.d_model, num_hidden_layers=spec.n_layers, num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.kv_heads, intermediate_size=spec.d_ff, vocab_size=spec.vocab_size,
        tie_word_embeddings=spec.tied_embeddings, max_position_embeddings=spec.max_positions)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
    expected = sum(p.numel() for p in model.parameters())
    assert count_params(spec).total == expected == 134_515_008


def test_gguf_spec_agrees_with_the_zoo_config(smollm2_oracle):
    """The zoo's transcription of SmolLM2's config.json against the real file's metadata."""
    a, b = from_gguf_metadata(*smollm2_oracle), zoo.get("smollm2")
    for field in ("d_model", "n_layers", "n_heads", "kv_heads", "d_head", "d_ff", "vocab_size", "max_positions",
                  "rope_theta", "tied_embeddings", "ffn_kind", "position", "norm"):
        assert getattr(a, field) == getattr(b, field), field
    assert a.norm_eps == pytest.approx(b.norm_eps)


def test_gguf_metadata_errors():
    with pytest.raises(SpecError, match="general.architecture"):
        from_gguf_metadata({})
    with pytest.raises(SpecError, match="'mamba' is not supported"):
        from_gguf_metadata({"general.architecture": "mamba"})
    with pytest.raises(SpecError, match="missing required key 'llama.block_count'"):
        from_gguf_metadata({"general.architecture": "llama", "llama.embedding_length": 8,
                            "llama.attention.head_count": 2, "llama.vocab_size": 10})
    with pytest.raises(SpecError, match="neither llama.vocab_size nor tokenizer.ggml.tokens"):
        from_gguf_metadata({"general.architecture": "llama", "llama.embedding_length": 8,
                            "llama.attention.head_count": 2})


def test_gguf_output_tensor_decides_tied_embeddings(smollm2_oracle):
    metadata, names = smollm2_oracle
    tied, untied = from_gguf_metadata(metadata, names), from_gguf_metadata(metadata, names | {"output.weight"})
    assert tied.tied_embeddings and not untied.tied_embeddings
    assert count_params(untied).total - count_params(tied).total == 49152 * 576


def test_gguf_llama_with_experts_is_mixtral(smollm2_oracle):
    metadata, names = smollm2_oracle
    spec = from_gguf_metadata({**metadata, "llama.expert_count": 8, "llama.expert_used_count": 2}, names)
    assert (spec.n_experts, spec.experts_per_token, spec.hf_model_type) == (8, 2, "mixtral")


def test_rope_scaling_is_validated():
    with pytest.raises(SpecError, match="rope_scaling.kind must be one of"):
        ModelSpec(**BASE, position="rope", rope_scaling=RopeScaling(kind="ntk"))
    with pytest.raises(SpecError, match="rope_scaling.factor must be positive"):
        ModelSpec(**BASE, position="rope", rope_scaling=RopeScaling(kind="linear", factor=0.0))
    with pytest.raises(SpecError, match="unsupported rope scaling 'ntk'"):
        from_hf_config({**zoo.entry("llama-2-7b").config, "rope_scaling": {"type": "ntk", "factor": 2.0}})
