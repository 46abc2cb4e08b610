"""Logits processors against transformers' warpers, and seeded sampling against its distribution."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    ForcedEOSTokenLogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
)

from llmkit.errors import LlmkitError
from llmkit.generate.config import GenerationConfig
from llmkit.generate.sampling import (
    bad_words,
    build_processors,
    forced_eos,
    make_generator,
    min_p,
    next_token,
    no_repeat_ngram,
    process,
    repetition_penalty,
    temperature,
    top_k,
    top_p,
    typical_p,
)

IDS = torch.zeros(4, 1, dtype=torch.long)  # transformers' warpers ignore the ids


def _logits(seed: int = 0, vocab: int = 50) -> torch.Tensor:
    return torch.randn(4, vocab, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("t", [0.3, 1.0, 1.7])
def test_temperature_equals_transformers(t):
    logits = _logits()
    assert torch.equal(temperature(logits, t), TemperatureLogitsWarper(t)(IDS, logits.clone()))


@pytest.mark.parametrize("k", [1, 5, 50, 500])  # 500 > vocab keeps everything
def test_top_k_equals_transformers(k):
    logits = _logits(1)
    logits[0, :10] = logits[0, 10]  # ties at the k-th value
    assert torch.equal(top_k(logits, k), TopKLogitsWarper(k)(IDS, logits.clone()))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.999, 1.0])
def test_top_p_equals_transformers(p):
    logits = _logits(2)
    assert torch.equal(top_p(logits, p), TopPLogitsWarper(p)(IDS, logits.clone()))


def test_top_p_with_all_but_one_minus_inf():
    logits = torch.full((1, 10), float("-inf"))
    logits[0, 3] = 0.0
    ours = top_p(logits, 0.5)
    assert torch.equal(ours, TopPLogitsWarper(0.5)(IDS[:1], logits.clone()))
    assert next_token(ours, [], make_generator(0)).item() == 3


def test_processor_order_is_temperature_top_k_top_p():
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=8, top_p=0.9)
    logits = _logits(3)
    expected = TopPLogitsWarper(0.9)(IDS, TopKLogitsWarper(8)(IDS, TemperatureLogitsWarper(0.7)(IDS, logits.clone())))
    got = logits
    for processor in build_processors(config):
        got = processor(got, IDS)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.9, 1.0])
def test_min_p_equals_transformers(p):
    logits = _logits(5)
    assert torch.equal(min_p(logits, p), MinPLogitsWarper(p)(IDS, logits.clone()))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9, 0.99, 0.999999])
def test_typical_p_equals_transformers(p):
    logits = _logits(6)
    assert torch.equal(typical_p(logits, p), TypicalLogitsWarper(p)(IDS, logits.clone()))


def _history(seed: int = 0, vocab: int = 50) -> torch.Tensor:
    """Token ids [4, 24] with repeats (small alphabet per row), so n-grams and penalties bite."""
    return torch.randint(0, 3, (4, 24), generator=torch.Generator().manual_seed(seed)) * 7 % vocab


@pytest.mark.parametrize("theta", [0.7, 1.0, 1.3, 2.0])
def test_repetition_penalty_equals_transformers(theta):
    logits, ids = _logits(7), _history(7)
    expected = RepetitionPenaltyLogitsProcessor(theta)(ids, logits.clone())
    assert torch.equal(repetition_penalty(logits, ids, theta), expected)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 30])  # 30 > len(ids): nothing banned
def test_no_repeat_ngram_equals_transformers(n):
    logits, ids = _logits(8), _history(8)
    expected = NoRepeatNGramLogitsProcessor(n)(ids, logits.clone())
    got = no_repeat_ngram(logits, ids, n)
    assert torch.equal(got, expected)
    assert n == 30 or torch.isinf(got).any()


def test_bad_words_equal_transformers():
    logits, ids = _logits(9), _history(9)
    banned = ((3,), (int(ids[0, -1]), 11), (int(ids[1, -2]), int(ids[1, -1]), 12), (40, 41))
    expected = NoBadWordsLogitsProcessor([list(b) for b in banned], eos_token_id=49)(ids, logits.clone())
    got = bad_words(logits, ids, banned)
    assert torch.equal(got, expected)
    assert torch.isinf(got[0, 11]) and torch.isinf(got[1, 12]) and not torch.isinf(got[2:, 41]).any()


@pytest.mark.parametrize("length", [11, 12, 13])
def test_forced_eos_equals_transformers(length):
    logits, ids = _logits(10), _history(10)[:, :12]  # 12 tokens: EOS forced only when max_length is 13
    expected = ForcedEOSTokenLogitsProcessor(length, 5)(ids, logits.clone())
    assert torch.equal(forced_eos(logits, ids, length, 5), expected)


def test_all_processors_in_order_equal_transformers_list():
    config = GenerationConfig(do_sample=True, repetition_penalty=1.2, no_repeat_ngram_size=2, bad_words_ids=((4,),),
                              forced_eos_token_id=2, temperature=0.8, top_k=30, top_p=0.95, min_p=0.02, typical_p=0.9)
    logits, ids = _logits(11), _history(11)
    hf = LogitsProcessorList([
        RepetitionPenaltyLogitsProcessor(1.2), NoRepeatNGramLogitsProcessor(2),
        NoBadWordsLogitsProcessor([[4]], eos_token_id=2), ForcedEOSTokenLogitsProcessor(40, 2),
        TemperatureLogitsWarper(0.8), TopKLogitsWarper(30), TopPLogitsWarper(0.95), MinPLogitsWarper(0.02),
        TypicalLogitsWarper(0.9),
    ])
    assert torch.equal(process(logits, ids, build_processors(config, 40)), hf(ids, logits.clone()))


def test_greedy_runs_the_processors_but_no_warpers():
    config = GenerationConfig(no_repeat_ngram_size=1, top_k=1, temperature=0.5)
    assert len(build_processors(config)) == 1  # warpers only with do_sample
    logits = torch.tensor([[5.0, 4.0, 1.0]])
    assert next_token(logits, build_processors(config), None, torch.tensor([[0]])).item() == 1


@pytest.mark.parametrize("warper", [lambda z: min_p(z, 0.5), lambda z: typical_p(z, 0.5), lambda z: top_k(z, 100)])
def test_edge_all_minus_inf_but_one(warper):
    logits = torch.full((1, 10), float("-inf"))
    logits[0, 7] = 1.0
    out = warper(logits)
    assert torch.isfinite(out).sum() == 1 and out[0, 7] == 1.0


def test_seeded_sampling_with_min_p_and_typical_matches_the_distribution():
    """Chi-square of 20000 draws against softmax(typical_p(min_p(logits))) at a fixed seed."""
    logits = torch.tensor([[2.0, 1.8, 1.2, 0.9, 0.4, -0.5, -2.0, -4.0]])
    config = GenerationConfig(do_sample=True, min_p=0.05, typical_p=0.95)
    processors = build_processors(config)
    expected = torch.softmax(process(logits, IDS[:1], processors), dim=-1)[0].double()
    generator = make_generator(99)
    draws = torch.stack([next_token(logits, processors, generator, IDS[:1]) for _ in range(20000)])[:, 0]
    counts = torch.bincount(draws, minlength=8).double()
    kept = expected > 0
    assert counts[~kept].sum() == 0
    e = expected[kept] * 20000
    chi2 = float(((counts[kept] - e) ** 2 / e).sum())
    dof = int(kept.sum()) - 1
    assert chi2 < {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}[dof]  # 0.1% critical values


def test_seeded_sampling_matches_the_processed_distribution():
    """Chi-square test of 20000 seeded draws against softmax(top_k(logits / T)), at a fixed seed."""
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -3.0, -5.0]])
    config = GenerationConfig(do_sample=True, temperature=0.8, top_k=5)
    processors = build_processors(config)
    expected = torch.softmax(top_k(logits / 0.8, 5), dim=-1)[0]
    generator = make_generator(1234)
    draws = torch.stack([next_token(logits, processors, generator) for _ in range(20000)])
    counts = torch.bincount(draws[:, 0], minlength=8).double()
    assert counts[5:].sum() == 0  # outside the top 5: never drawn
    e = expected[:5].double() * 20000
    chi2 = float(((counts[:5] - e) ** 2 / e).sum())
    assert chi2 < 18.47  # the 0.1% critical value for 4 degrees of freedom


def test_same_seed_same_draws():
    logits = _logits(4)
    a = [next_token(logits, [], g).tolist() for g in [make_generator(7)] for _ in range(5)]
    b = [next_token(logits, [], g).tolist() for g in [make_generator(7)] for _ in range(5)]
    assert a == b


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"top_k": 0}, {"top_p": 1.5}, {"max_new_tokens": 0},
                                 {"stop": ("",)}, {"min_p": 2.0}, {"typical_p": 0.0}, {"repetition_penalty": 0.0},
                                 {"num_beams": 0}, {"num_beams": 2, "num_return_sequences": 3},
                                 {"num_return_sequences": 2}, {"num_beams": 2, "do_sample": True},
                                 {"penalty_alpha": 1.5}, {"bad_words_ids": ((),)}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(LlmkitError):
        GenerationConfig(**bad)
