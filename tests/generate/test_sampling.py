"""Logits processors against transformers' warpers, and seeded sampling against its distribution."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from llmkit.errors import LlmkitError
from llmkit.generate.config import GenerationConfig
from llmkit.generate.sampling import build_processors, make_generator, next_token, temperature, top_k, top_p

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
        got = processor(got)
    assert torch.equal(got, expected)


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


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(top_k=0), dict(top_p=1.5), dict(max_new_tokens=0),
                                 dict(stop=("",))])
def test_bad_settings_are_refused(bad):
    with pytest.raises(LlmkitError):
        GenerationConfig(**bad)
