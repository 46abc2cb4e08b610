"""Logits processors and token choice (sheet section 9).

A processor maps logits [batch, vocab] to logits; they run in this documented order
(transformers' order for its sampling warpers):

    temperature -> top-k -> top-p            then softmax and one multinomial draw

    temperature  p_i = exp(z_i / T) / Z                        (sheet section 9)
    top-k        keep the k largest logits (ties at the k-th all kept)      (Fan et al. 2018)
    top-p        keep the smallest set of tokens whose probability sums to >= p  (Holtzman et al. 2020)

Greedy decoding takes argmax of the raw logits and runs no processor.
Issue 6 adds min-p, typical-p, repetition penalty, n-gram blocking, bad words here.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from llmkit.generate.config import GenerationConfig

LogitsProcessor = Callable[[torch.Tensor], torch.Tensor]


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """z / T: T < 1 sharpens the distribution, T > 1 flattens it."""
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits below the k-th largest set to -inf (ties with the k-th kept, as transformers does)."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # [batch, 1]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus: drop the tokens whose ascending cumulative probability stays <= 1 - p (transformers' rule)."""
    ascending, order = torch.sort(logits, dim=-1)  # [batch, vocab], smallest first
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - p
    drop[..., -min_keep:] = False  # always keep the most likely token(s)
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def build_processors(config: GenerationConfig) -> list[LogitsProcessor]:
    """The processors ``config`` asks for, in the order temperature -> top-k -> top-p."""
    if not config.do_sample:
        return []
    processors: list[LogitsProcessor] = []
    if config.temperature != 1.0:
        processors.append(partial(temperature, t=config.temperature))
    if config.top_k is not None:
        processors.append(partial(top_k, k=config.top_k))
    if config.top_p is not None and config.top_p < 1.0:
        processors.append(partial(top_p, p=config.top_p))
    return processors


def make_generator(seed: int | None) -> torch.Generator:
    """A torch.Generator seeded with ``seed`` (fresh entropy when None)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def next_token(
    logits: torch.Tensor, processors: list[LogitsProcessor], generator: torch.Generator | None
) -> torch.Tensor:
    """The next token ids [batch]: argmax when no generator is given, else one draw from softmax(processed logits)."""
    if generator is None:
        return logits.argmax(dim=-1)
    for processor in processors:
        logits = processor(logits)
    probs = torch.softmax(logits.float(), dim=-1)  # [batch, vocab]
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]
