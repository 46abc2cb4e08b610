"""calc.kvcache against the cache tensors transformers holds, and the sheet's worked example."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from llmkit import zoo
from llmkit.calc.kvcache import kv_cache, kv_cache_bytes, max_tokens_for_budget
from llmkit.errors import LlmkitError
from llmkit.spec import from_hf_config


def cache_tensor_bytes(layers) -> int:
    """Bytes of every key and value tensor in a transformers cache's layers."""
    return sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))


def run(model, **inputs):
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
    return getattr(out, "cache", None) or out.past_key_values


TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=101, max_position_embeddings=128)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gqa_cache_bytes_equal_transformers_cache(dtype):
    torch.manual_seed(0)
    config = T.LlamaConfig(**TINY)
    model = T.LlamaForCausalLM(config).to(dtype).eval()
    cache = run(model, input_ids=torch.randint(0, 101, (3, 17)))
    spec = from_hf_config(config.to_dict())
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    assert spec.attention_kind == "GQA"
    assert kv_cache_bytes(spec, 17, 3, name) == cache_tensor_bytes(cache.layers)


def test_sliding_window_cache_matches_transformers_window_minus_one():
    """transformers 5's DynamicSlidingWindowLayer keeps W - 1 tokens between steps (the next token makes W)."""
    torch.manual_seed(0)
    config = T.MistralConfig(**TINY, sliding_window=8)
    model = T.MistralForCausalLM(config).eval()
    cache = run(model, input_ids=torch.randint(0, 101, (2, 20)))
    spec = from_hf_config(config.to_dict())
    assert spec.sliding_window == 8
    assert kv_cache_bytes(spec, 20, 2, "fp32", window_keeps="transformers") == cache_tensor_bytes(cache.layers)
    cache = run(model, input_ids=torch.randint(0, 101, (2, 1)), cache=cache)
    assert kv_cache_bytes(spec, 21, 2, "fp32", window_keeps="transformers") == cache_tensor_bytes(cache.layers)
    # the default convention counts the full window W (the step's peak, a rolling buffer of W)
    assert kv_cache_bytes(spec, 20, 2, "fp32") == kv_cache_bytes(spec, 20, 2, "fp32", window=None) * 8 // 20
    assert kv_cache_bytes(spec, 5, 2, "fp32") == kv_cache_bytes(spec, 5, 2, "fp32", window=None)


def test_encoder_decoder_cache_adds_cross_attention_over_the_encoder():
    torch.manual_seed(0)
    config = T.T5Config(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=4, vocab_size=101)
    model = T.T5ForConditionalGeneration(config).eval()
    cache = run(model, input_ids=torch.randint(0, 101, (2, 11)), decoder_input_ids=torch.randint(0, 101, (2, 5)))
    spec = from_hf_config(config.to_dict())
    est = kv_cache(spec, 5, 2, "fp32", encoder_len=11)
    assert est.self_attention_bytes == cache_tensor_bytes(cache.self_attention_cache.layers)
    assert est.cross_attention_bytes == cache_tensor_bytes(cache.cross_attention_cache.layers)


def test_sheet_example_llama2_7b_fp16_4096_tokens():
    """Sheet sec. 12: 2 x 32 x 32 x 128 x 4096 x 2 bytes = 2 GiB exactly (the sheet rounds to "2.1 GB")."""
    spec = zoo.get("llama-2-7b")
    assert kv_cache_bytes(spec, 4096, 1, "fp16") == 2 * 32 * 32 * 128 * 4096 * 2 == 2 * 2**30


def test_llama3_128k_uses_gqa_not_the_sheets_mha_scaling():
    """The sheet scales the MHA 7B figure to 67 GB; LLaMA 3.x 8B has 8 KV heads (same shape in 3.1-8B)."""
    spec = zoo.get("llama-3-8b")
    assert (spec.n_layers, spec.kv_heads, spec.d_head) == (32, 8, 128)
    b = kv_cache_bytes(spec, 128 * 1024, 1, "fp16")
    assert b == 2 * 32 * 8 * 128 * 131072 * 2  # 16 GiB = 17.2 GB, a quarter of the sheet's 67 GB
    assert b < 67e9 / 3


def test_quantized_kv_in_whole_blocks_along_d_head():
    spec = zoo.get("llama-2-7b")
    fp16 = kv_cache_bytes(spec, 4096, 1, "fp16")
    assert kv_cache_bytes(spec, 4096, 1, "q8_0") == fp16 * 34 // 64  # 4 blocks of 32: 136 B per head row
    assert kv_cache_bytes(spec, 4096, 1, "q4_0") == fp16 * 18 // 64
    assert kv_cache_bytes(spec, 4096, 1, "int8") == fp16 // 2
    phi = zoo.get("phi-3-mini-4k").with_(head_dim=80)  # 80 = 2.5 blocks of 32: rounded up to 3 per head
    assert kv_cache_bytes(phi, 10, 1, "q8_0", window=None) == 2 * 32 * 32 * 3 * 34 * 10


def test_paged_cache_rounds_each_sequence_up_to_whole_blocks():
    spec = zoo.get("llama-2-7b")
    per_token = kv_cache(spec, 1).bytes_per_token
    assert kv_cache_bytes(spec, 17, 3, "fp16", block_size=16) == per_token * 32 * 3
    assert kv_cache_bytes(spec, 32, 3, "fp16", block_size=16) == per_token * 32 * 3


def test_max_tokens_for_budget_is_the_exact_inverse():
    spec = zoo.get("llama-3-8b")
    budget = 10**9
    n = max_tokens_for_budget(spec, budget)
    assert kv_cache_bytes(spec, n) <= budget < kv_cache_bytes(spec, n + 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"seq_len": -1}, "seq_len"), ({"seq_len": 4, "dtype": "fp12"}, "KV dtype"),
     ({"seq_len": 4, "window": 0}, "window"), ({"seq_len": 4, "block_size": 0}, "block_size")],
)
def test_bad_settings_name_the_field(kwargs, message):
    with pytest.raises(LlmkitError, match=message):
        kv_cache_bytes(zoo.get("gpt2"), **kwargs)
