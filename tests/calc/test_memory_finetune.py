"""calc.memory_finetune: trainable parameters equal peft's count on the same (tiny, random) models."""

from __future__ import annotations

import peft
import pytest
import torch
import transformers as T

from llmkit import zoo
from llmkit.calc.memory_finetune import (
    FinetuneSettings,
    adapter_params,
    finetune_memory,
    lora_params,
    trainable_params,
)
from llmkit.calc.memory_train import TrainSettings
from llmkit.calc.params import tensors
from llmkit.errors import LlmkitError
from llmkit.spec import from_hf_config

# (config, model class, peft task, module names peft targets for "qv" and "qkvo").
TINY = {
    "llama": (T.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=101),
              T.LlamaForCausalLM, "CAUSAL_LM",
              {"qv": ["q_proj", "v_proj"], "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"]}),
    "gpt2": (T.GPT2Config(n_embd=48, n_layer=2, n_head=4, vocab_size=101, n_positions=64),
             T.GPT2LMHeadModel, "CAUSAL_LM", {"qv": ["c_attn"], "qkvo": ["c_attn", "attn.c_proj"]}),
    "bert": (T.BertConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                          vocab_size=101, max_position_embeddings=64),
             T.BertModel, "FEATURE_EXTRACTION",
             {"qv": ["query", "value"], "qkvo": ["query", "key", "value", "attention.output.dense"]}),
    "phi3": (T.Phi3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=101, pad_token_id=0),
             T.Phi3ForCausalLM, "CAUSAL_LM", {"qv": ["qkv_proj"], "qkvo": ["qkv_proj", "o_proj"]}),
    "mixtral": (T.MixtralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, vocab_size=101, num_local_experts=3, num_experts_per_tok=2),
                T.MixtralForCausalLM, "CAUSAL_LM", {"qv": ["q_proj", "v_proj"], "qkvo": ["q_proj", "k_proj", "v_proj", "o_proj"]}),
    "t5": (T.T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, vocab_size=101),
           T.T5ForConditionalGeneration, "SEQ_2_SEQ_LM", {"qv": ["q", "v"], "qkvo": ["q", "k", "v", "o"]}),
}


def peft_trainable(family: str, config: peft.PeftConfig) -> int:
    cfg, cls, _, _ = TINY[family]
    torch.manual_seed(0)
    return peft.get_peft_model(cls(cfg), config).get_nb_trainable_parameters()[0]


def our_spec(family: str):
    return from_hf_config(TINY[family][0].to_dict())


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert", "phi3", "mixtral"])
@pytest.mark.parametrize("targets", ["qv", "qkvo", "all-linear"])
def test_lora_counts_equal_peft(family, targets):
    _, _, task, names = TINY[family]
    modules = "all-linear" if targets == "all-linear" else names[targets]
    expected = peft_trainable(family, peft.LoraConfig(task_type=task, r=4, target_modules=modules))
    assert lora_params(tensors(our_spec(family)), 4, targets) == expected


@pytest.mark.parametrize("family", ["llama", "t5", "bert"])
@pytest.mark.parametrize("method", ["prefix", "prompt", "ia3"])
def test_prefix_prompt_ia3_counts_equal_peft(family, method):
    task = TINY[family][2]
    config = {
        "prefix": peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=5),
        "prompt": peft.PromptTuningConfig(task_type=task, num_virtual_tokens=5),
        "ia3": peft.IA3Config(task_type=task),
    }[method]
    ours = trainable_params(our_spec(family), FinetuneSettings(method=method, virtual_tokens=5))
    assert ours == peft_trainable(family, config)


def test_sheet_claim_r16_adds_30m_params_to_7b():
    """Sheet sec. 13 says r=16 adds ~30M (0.4%): q,v gives 8.4M (0.12%), all linear 40.0M (0.59%) (Hu et al.)."""
    inv = tensors(zoo.get("llama-7b"))
    assert lora_params(inv, 8, "qv") == 4_194_304  # r (4096 + 4096) x 2 modules x 32 layers
    assert lora_params(inv, 16, "qv") == 16 * 8192 * 2 * 32 == 8_388_608
    assert lora_params(inv, 16, "all-linear") == 16 * 32 * (4 * 8192 + 3 * (4096 + 11008)) == 39_976_960


def test_houlsby_adapters():
    spec = zoo.get("bert-base-uncased")
    assert adapter_params(spec, 64) == 2 * 12 * (2 * 768 * 64 + 768 + 64)


def test_qlora_base_is_nf4_and_adapters_train_in_fp32():
    spec = zoo.get("llama-2-7b")
    train = TrainSettings(seq_len=512, recompute="full")
    lora = finetune_memory(spec, FinetuneSettings(method="lora", targets="all-linear", train=train))
    qlora = finetune_memory(spec, FinetuneSettings(method="qlora", targets="all-linear", train=train))
    nodq = finetune_memory(spec, FinetuneSettings(method="qlora", targets="all-linear", double_quant=False, train=train))
    n = 39_976_960
    assert lora.trainable_params == qlora.trainable_params == n
    assert qlora.breakdown["gradients_bytes"] == 4 * n and qlora.breakdown["optimizer_bytes"] == 8 * n
    assert qlora.breakdown["weights_bytes"] < nodq.breakdown["weights_bytes"] < lora.breakdown["weights_bytes"]
    linear = sum(t.numel for t in tensors(spec) if t.role not in ("embed", "head", "norm"))
    assert nodq.breakdown["weights_bytes"] - qlora.breakdown["weights_bytes"] == pytest.approx(linear * 0.373 / 8, rel=1e-3)


def test_frozen_linears_do_not_keep_their_inputs():
    spec = zoo.get("llama-2-7b")
    train = TrainSettings(seq_len=1024)
    full = finetune_memory(spec, FinetuneSettings(method="full", train=train)).breakdown["activations_bytes"]
    qv = finetune_memory(spec, FinetuneSettings(method="lora", targets="qv", train=train)).breakdown["activations_bytes"]
    every = finetune_memory(spec, FinetuneSettings(method="lora", targets="all-linear", train=train))
    assert qv < every.breakdown["activations_bytes"] == full


@pytest.mark.parametrize(("kwargs", "message"), [({"rank": 0}, "rank"), ({"method": "dora"}, "method"),
                                                 ({"targets": "qk"}, "LoRA targets")])
def test_bad_settings(kwargs, message):
    with pytest.raises(LlmkitError, match=message):
        FinetuneSettings(**kwargs)
