"""The real SmolLM2-135M-Instruct: llmkit against transformers loading the same GGUF in float32."""

from __future__ import annotations

import pytest
import torch

from llmkit.calc.kvcache import kv_cache_bytes
from llmkit.calc.params import count_params
from llmkit.generate.cache import ContiguousKVCache
from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import decode_tokens, generate

LONG = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based inks and a wooden press adapted from those used to make wine. "
) * 8 + "In summary, the most important consequence of the printing press was"
PROMPTS = {
    "plain": "The three primary colors are",
    "chat": None,  # rendered by transformers' chat template below
    "code": "def fibonacci(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "non-english": "Le Japon est un pays insulaire d'Asie de l'Est. 東京は日本の首都で、",
    "long": LONG,
}


@pytest.fixture(scope="module")
def prompt_ids(hf_tokenizer) -> dict[str, list[int]]:
    """Token ids from transformers' tokenizer, fed to both models (the model is under test, not the tokenizer)."""
    ids = {}
    for name, text in PROMPTS.items():
        if name == "chat":
            text = hf_tokenizer.apply_chat_template(
                [{"role": "user", "content": "Give me two tips for sleeping well."}],
                add_generation_prompt=True, tokenize=False,
            )
        ids[name] = hf_tokenizer.encode(text, add_special_tokens=False)
    assert len(ids["long"]) >= 300
    return ids


@pytest.mark.parametrize("name", list(PROMPTS))
def test_last_logits_equal_transformers(smollm2, hf_smollm2, prompt_ids, name):
    ids = torch.tensor([prompt_ids[name]])
    with torch.inference_mode():
        expected = hf_smollm2(ids).logits[0, -1]
        got = smollm2.model(ids, last_only=True)[0, -1]
    assert (got - expected).abs().max() / expected.abs().max() <= 1e-4


@pytest.mark.parametrize("name", list(PROMPTS))
def test_greedy_64_tokens_equal_transformers(smollm2, hf_smollm2, prompt_ids, name):
    ids = torch.tensor([prompt_ids[name]])
    eos = hf_smollm2.generation_config.eos_token_id
    eos = tuple(eos) if isinstance(eos, list) else (eos,)
    with torch.inference_mode():
        out = hf_smollm2.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=64,
                                  output_logits=True, return_dict_in_generate=True, pad_token_id=eos[0])
    expected = out.sequences[0, ids.shape[1]:].tolist()
    got = list(decode_tokens(smollm2.model, prompt_ids[name], GenerationConfig(max_new_tokens=64, eos_ids=eos)))
    if got != expected:
        step = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
        top2 = out.logits[step][0].topk(2).values
        margin = float(top2[0] - top2[1])
        assert margin < 0.01, f"prompt {name!r}: outputs part at step {step}, not a near-tie (margin {margin:.4f})"
        print(f"prompt {name!r}: identical for {step} tokens, then a near-tie (transformers' margin {margin:.5f})")
    else:
        assert len(got) == len(expected)


def test_generate_streams_the_text_and_stops_at_a_stop_string(smollm2, prompt_ids):
    pieces: list[str] = []
    free = generate(smollm2.model, smollm2.tokenizer, prompt_ids["long"], GenerationConfig(max_new_tokens=24),
                    on_text=pieces.append)
    assert "".join(pieces) == free.text == smollm2.tokenizer.decode(list(free.token_ids))
    assert free.prompt_tokens == len(prompt_ids["long"]) and free.tokens_per_second > 0
    stop = free.text[len(free.text) // 2 : len(free.text) // 2 + 3]
    pieces.clear()
    stopped = generate(smollm2.model, smollm2.tokenizer, prompt_ids["long"],
                       GenerationConfig(max_new_tokens=24, stop=(stop,)), on_text=pieces.append)
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.find(stop)] == "".join(pieces)


def test_generate_stops_at_eos(smollm2, prompt_ids):
    result = generate(smollm2.model, smollm2.tokenizer, prompt_ids["chat"], GenerationConfig(max_new_tokens=200))
    assert result.finish_reason == "eos" and result.token_ids[-1] == smollm2.tokenizer.eos_id
    assert "<|im_end|>" not in result.text


def test_kv_cache_bytes_equal_calc_kv(smollm2):
    for n in (1, 300, 8192):
        assert ContiguousKVCache(smollm2.spec, 1, n).nbytes == kv_cache_bytes(smollm2.spec, n, dtype="fp32")


def test_parameter_count_equals_calc_params(smollm2, hf_smollm2):
    n = sum(p.numel() for p in smollm2.model.parameters())
    assert n == count_params(smollm2.spec).total == sum(p.numel() for p in hf_smollm2.parameters())
