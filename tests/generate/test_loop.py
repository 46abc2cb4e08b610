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

TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


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


def test_stop_index_finds_the_earliest_stop():
    assert stop_index("abc\n\nUser: x", ("User:", "\n\n")) == 3
    assert stop_index("no stop here", ("###",)) == -1


def test_held_back_keeps_a_possible_stop_prefix():
    assert held_back("Hello Us", ("User:",)) == 2
    assert held_back("Hello U", ("User:", "Um")) == 1
    assert held_back("Hello", ("User:",)) == 0
    assert held_back("Hello", ()) == 0
