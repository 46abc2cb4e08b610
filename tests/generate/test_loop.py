"""The generation loop: greedy equals transformers' generate; stop strings and streaming behave."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from llmkit.errors import LlmkitError
from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import decode_tokens, held_back, stop_index
from llmkit.io.hf import llama_state_dict
from llmkit.load import build_model
from llmkit.spec import from_hf_config

TINY = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 64}


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request):
    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[
        request.param
    ]
    torch.manual_seed(0)
    config = config_cls(**TINY, tie_word_embeddings=request.param == "llama")
    hf = model_cls(config).eval()
    with torch.no_grad():  # weights larger than the default init: varied, untied argmaxes
        for p in hf.parameters():
            p.normal_(0.0, 0.15) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    spec = from_hf_config(config.to_dict())
    return hf, build_model(spec, llama_state_dict(hf.state_dict(), spec))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_16_tokens_equal_transformers_generate(tiny, seed):
    hf, ours = tiny
    prompt = torch.randint(0, 128, (1, 6), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=16,
                               min_new_tokens=16, eos_token_id=None, pad_token_id=0)[0, 6:].tolist()
    got = list(decode_tokens(ours, prompt[0].tolist(), GenerationConfig(max_new_tokens=16)))
    assert got == expected


def test_seeded_sampling_equals_transformers_with_the_same_seed(tiny):
    """transformers draws with torch.multinomial from the global generator; ours from a generator with the same seed."""
    hf, ours = tiny
    prompt = torch.randint(0, 128, (1, 5), generator=torch.Generator().manual_seed(9))
    torch.manual_seed(42)
    with torch.no_grad():
        expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, temperature=0.9,
                               top_k=20, top_p=0.9, max_new_tokens=12, min_new_tokens=12, eos_token_id=None,
                               pad_token_id=0)[0, 5:].tolist()
    config = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=0.9, top_k=20, top_p=0.9, seed=42)
    assert list(decode_tokens(ours, prompt[0].tolist(), config)) == expected


def test_new_tokens_are_clipped_to_the_context_window(tiny):
    _, ours = tiny  # max_position_embeddings 64
    got = list(decode_tokens(ours, list(range(60)), GenerationConfig(max_new_tokens=50)))
    assert len(got) == 4
    with pytest.raises(LlmkitError, match="context window"):
        list(decode_tokens(ours, list(range(64)), GenerationConfig()))


def test_a_long_prefill_gives_its_freed_heap_back(tiny, monkeypatch):
    """feed() releases the heap (llmkit.heap) after a prefill of RELEASE_AFTER_TOKENS tokens or more, not after
    a short one or a decoding step; the tokens are the same either way."""
    from llmkit.generate import loop

    _, ours = tiny
    calls = []
    monkeypatch.setattr(loop, "RELEASE_AFTER_TOKENS", 8)
    monkeypatch.setattr(loop, "release_freed_heap", lambda: calls.append(1))
    config = GenerationConfig(max_new_tokens=5)
    long = list(decode_tokens(ours, list(range(10)), config))
    assert calls == [1]
    short = list(decode_tokens(ours, list(range(7)), config))
    assert calls == [1]
    monkeypatch.setattr(loop, "RELEASE_AFTER_TOKENS", 10**9)
    assert list(decode_tokens(ours, list(range(10)), config)) == long
    assert list(decode_tokens(ours, list(range(7)), config)) == short


def test_stop_index_finds_the_earliest_stop():
    assert stop_index("abc\n\nUser: x", ("User:", "\n\n")) == 3
    assert stop_index("no stop here", ("###",)) == -1


def test_held_back_keeps_a_possible_stop_prefix():
    assert held_back("Hello Us", ("User:",)) == 2
    assert held_back("Hello U", ("User:", "Um")) == 1
    assert held_back("Hello", ("User:",)) == 0
    assert held_back("Hello", ()) == 0


# -- batches of different-length prompts on the real model ----------------------------------------

from llmkit.generate.loop import decode_batch, generate, generate_batch, left_pad

BATCH_TEXTS = ["Hi", "The three primary colors are", "def add(a, b):\n    return",
               "Once upon a time, in a small village by the sea, there lived an old fisherman who"]


def test_left_pad_masks_the_padding():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_batched_generation_equals_one_at_a_time_on_smollm2(smollm2):
    prompts = [smollm2.tokenizer.encode(t, add_special=False) for t in BATCH_TEXTS]
    assert len({len(p) for p in prompts}) == len(prompts)  # all different lengths
    config = GenerationConfig(max_new_tokens=24, eos_ids=(smollm2.tokenizer.eos_id,))
    batched = decode_batch(smollm2.model, prompts, config, (smollm2.tokenizer.eos_id,))
    assert batched == [list(decode_tokens(smollm2.model, p, config)) for p in prompts]


def test_each_row_stops_on_its_own(tiny_llama):
    _, model = tiny_llama
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    free = decode_batch(model, prompts, GenerationConfig(max_new_tokens=12))
    eos = free[0][3]  # the first row's 4th token becomes EOS: that row stops there, the other goes on
    got = decode_batch(model, prompts, GenerationConfig(max_new_tokens=12), (eos,))
    assert got[0] == free[0][:4]
    cut = free[1].index(eos) + 1 if eos in free[1] else len(free[1])
    assert got[1] == free[1][:cut]


def test_generate_batch_and_sampled_sequences_return_texts(smollm2):
    tok = smollm2.tokenizer
    results = generate_batch(smollm2.model, tok, [tok.encode(t, add_special=False) for t in BATCH_TEXTS[:2]],
                             GenerationConfig(max_new_tokens=6))
    assert [r.text for r in results] == [tok.decode(list(r.token_ids)) for r in results]
    sampled = generate(smollm2.model, tok, tok.encode("Name an animal:", add_special=False),
                       GenerationConfig(max_new_tokens=6, do_sample=True, num_return_sequences=3, seed=1))
    assert len(sampled.sequences) == 3 and sampled.to_json()["sequences"][0]["token_ids"] == list(sampled.token_ids)
    beams = generate(smollm2.model, tok, tok.encode("Name an animal:", add_special=False),
                     GenerationConfig(max_new_tokens=6, num_beams=3, num_return_sequences=2))
    assert len(beams.sequences) == 2 and beams.sequences[0].score >= beams.sequences[1].score
