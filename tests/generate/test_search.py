"""Beam search equals transformers' generate on SmolLM2; contrastive search equals the published algorithm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmkit.generate.config import GenerationConfig
from llmkit.generate.search import (
    beam_search,
    contrastive_scores,
    contrastive_tokens,
    degeneration_penalty,
)

TEXTS = [
    "The three primary colors are",
    "def is_prime(n):\n",
    "Paris is the capital of",
    "Once upon a time, in a small village,",
    "To make a cup of tea, first",
]


@pytest.fixture(scope="module")
def prompts(hf_tokenizer) -> list[list[int]]:
    return [hf_tokenizer.encode(t, add_special_tokens=False) for t in TEXTS]


@pytest.fixture(scope="module")
def eos(hf_smollm2) -> tuple[int, ...]:
    e = hf_smollm2.generation_config.eos_token_id
    return tuple(e) if isinstance(e, list) else (e,)


def _hf_beams(hf, ids: list[int], eos: tuple[int, ...], **settings) -> list[tuple[list[int], float]]:
    """transformers' beam hypotheses as (new ids up to and including EOS, score)."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        out = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=32, pad_token_id=eos[0],
                          eos_token_id=list(eos),
                          return_dict_in_generate=True, output_scores=True, **settings)
    found = []
    for row, score in zip(out.sequences[:, len(ids):].tolist(), out.sequences_scores.tolist()):
        ends = [i for i, t in enumerate(row) if t in eos]
        found.append((row[: ends[0] + 1] if ends else row, score))
    return found


BEAM_SETTINGS = [
    {"num_beams": 4, "num_return_sequences": 2},
    {"num_beams": 4, "no_repeat_ngram_size": 3, "length_penalty": 0.6, "num_return_sequences": 4},
    {"num_beams": 4, "length_penalty": 2.0, "early_stopping": True},
]


@pytest.mark.parametrize("settings", BEAM_SETTINGS[:2], ids=["plain", "ngram3-lp0.6"])
def test_beam_search_equals_transformers_on_smollm2(smollm2, hf_smollm2, prompts, eos, settings):
    for ids in prompts:
        expected = _hf_beams(hf_smollm2, ids, eos, **settings)
        got = beam_search(smollm2.model, ids, GenerationConfig(max_new_tokens=32, **settings), eos)
        assert [g for g, _ in got] == [e for e, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-4)


TINY_SETTINGS = [
    {"num_beams": 3, "num_return_sequences": 3, "length_penalty": 0.5},
    {"num_beams": 4, "length_penalty": 2.0, "early_stopping": True},
    {"num_beams": 4, "length_penalty": 1.5, "early_stopping": "never", "num_return_sequences": 2},
    {"num_beams": 2, "no_repeat_ngram_size": 2, "length_penalty": -0.5},
]


@pytest.mark.parametrize("settings", TINY_SETTINGS, ids=["lp0.5", "lp2-early", "lp1.5-never", "ngram2-neg"])
def test_beam_search_on_a_tiny_model_equals_transformers(tiny_llama, settings):
    hf, ours = tiny_llama
    for seed in range(4):
        ids = torch.randint(0, 128, (6,), generator=torch.Generator().manual_seed(seed)).tolist()
        expected = _hf_beams(hf, ids, (7,), **settings)
        got = beam_search(ours, ids, GenerationConfig(max_new_tokens=32, **settings), (7,))
        assert [g for g, _ in got] == [e for e, _ in expected]
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-4)


def test_degeneration_penalty_hand_worked():
    """Context e1, e2; candidates e1 (cos 1), (1, 1) (cos 0.7071), -e1 (cos max(-1, 0) = 0)."""
    context = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    assert degeneration_penalty(candidates, context).tolist() == pytest.approx([1.0, 2**-0.5, 0.0])
    # alpha 0.6: 0.4 p - 0.6 penalty = 0.2 - 0.6, 0.12 - 0.42426, 0.08 - 0: the least similar wins
    scores = contrastive_scores(torch.tensor([0.5, 0.3, 0.2]), candidates, context, 0.6)
    assert scores.tolist() == pytest.approx([-0.4, 0.12 - 0.6 * 2**-0.5, 0.08])
    assert int(scores.argmax()) == 2
    assert int(contrastive_scores(torch.tensor([0.5, 0.3, 0.2]), candidates, context, 0.0).argmax()) == 0  # greedy


def _contrastive_reference(model, ids: list[int], k: int, alpha: float, steps: int) -> list[int]:
    """Su et al. 2022 written out without a cache: every candidate continuation re-run from scratch."""
    hidden = {}
    handle = model.norm.register_forward_hook(lambda m, i, o: hidden.__setitem__("h", o))
    out: list[int] = []
    try:
        with torch.inference_mode():
            for _ in range(steps):
                seq = torch.tensor([ids + out])
                probs = torch.softmax(model(seq)[0, -1], dim=-1)
                context = hidden["h"][0]  # [t, d]
                top = probs.topk(k)
                best, best_score = None, -float("inf")
                for p, v in zip(top.values.tolist(), top.indices.tolist()):
                    model(torch.tensor([ids + out + [v]]))
                    h_v = hidden["h"][0, -1]
                    penalty = max(float(F.cosine_similarity(h_v, h_j, dim=0)) for h_j in context)
                    score = (1 - alpha) * p - alpha * penalty
                    if score > best_score:
                        best, best_score = v, score
                out.append(best)
    finally:
        handle.remove()
    return out


def test_contrastive_search_equals_the_reference_on_a_tiny_model(tiny_llama):
    _, ours = tiny_llama
    for seed in range(3):
        ids = torch.randint(0, 128, (5,), generator=torch.Generator().manual_seed(seed)).tolist()
        config = GenerationConfig(max_new_tokens=16, penalty_alpha=0.6, top_k=4)
        assert config.strategy == "contrastive"
        assert list(contrastive_tokens(ours, ids, config)) == _contrastive_reference(ours, ids, 4, 0.6, 16)


def test_contrastive_search_equals_the_reference_on_smollm2(smollm2, prompts):
    for ids in prompts[:2]:
        config = GenerationConfig(max_new_tokens=8, penalty_alpha=0.6, top_k=4)
        assert list(contrastive_tokens(smollm2.model, ids, config)) == _contrastive_reference(
            smollm2.model, ids, 4, 0.6, 8)
