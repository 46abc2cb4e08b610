"""Logits processors and token choice (sheet section 9).

A processor maps (logits [batch, vocab], ids [batch, seq]) to logits. :func:`build_processors`
lists them in one documented order, transformers' ``LogitsProcessorList`` order:

    repetition penalty -> no-repeat-n-gram -> bad words -> forced EOS      (every strategy)
    temperature -> top-k -> top-p -> min-p -> typical-p                    (sampling only: the "warpers")
    then softmax and one multinomial draw (sampling), or argmax (greedy)

    repetition   z_i / theta if z_i > 0 else z_i * theta, for tokens already in ids   (Keskar et al. 2019, CTRL)
    n-gram       -inf for a token that would repeat an n-gram already in ids          (Paulus et al. 2017)
    bad words    -inf for the last token of a banned sequence whose prefix ends ids
    forced EOS   only EOS allowed at the last step (len(ids) == max_length - 1)
    temperature  p_i = exp(z_i / T) / Z                                               (sheet section 9)
    top-k        keep the k largest logits (ties at the k-th all kept)                (Fan et al. 2018)
    top-p        keep the smallest set of tokens whose probability sums to >= p       (Holtzman et al. 2020)
    min-p        keep tokens with p_i >= min_p * max_j p_j                            (Nguyen et al. 2024)
    typical-p    keep the tokens closest to the entropy, |-log p_i - H|, up to mass p (Meister et al. 2022)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from llmkit.generate.config import GenerationConfig

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits [b, V], ids [b, t]) -> logits
NEG_INF = float("-inf")


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """z / T: T < 1 sharpens the distribution, T > 1 flattens it."""
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits below the k-th largest set to -inf (ties with the k-th kept, as transformers does)."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # [batch, 1]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus: drop the tokens whose ascending cumulative probability stays <= 1 - p (transformers' rule)."""
    ascending, order = torch.sort(logits, dim=-1)  # [batch, vocab], smallest first
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= 1 - p
    drop[..., -min_keep:] = False  # always keep the most likely token(s)
    return logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


def min_p(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Drop tokens with probability < p * (the top token's probability); the min_keep most likely stay."""
    probs = logits.softmax(dim=-1)  # [batch, vocab]
    drop = probs < p * probs.amax(dim=-1, keepdim=True)
    order = torch.argsort(logits, dim=-1, descending=True, stable=True)
    drop_sorted = drop.gather(-1, order)
    drop_sorted[..., :min_keep] = False
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def typical_p(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Locally typical sampling: keep tokens by increasing |-log p_i - H| until their mass reaches p."""
    log_probs = logits.log_softmax(dim=-1)  # [batch, vocab]
    entropy = -(log_probs * log_probs.exp()).nansum(dim=-1, keepdim=True)  # H, [batch, 1]
    distance, order = torch.sort((-log_probs - entropy).abs(), dim=-1)  # most typical first
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < p).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)  # [batch, 1]
    drop_sorted = distance > distance.gather(-1, last)
    drop_sorted[..., :min_keep] = False
    return logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), NEG_INF)


def repetition_penalty(logits: torch.Tensor, ids: torch.Tensor, theta: float) -> torch.Tensor:
    """CTRL's penalty on every token already in ids: z / theta where z > 0, z * theta where z < 0."""
    seen = logits.gather(-1, ids)  # [batch, seq]
    return logits.scatter(-1, ids, torch.where(seen < 0, seen * theta, seen / theta))


def banned_ngram_tokens(row: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already present in ``row`` (its last n-1 tokens as the prefix)."""
    if len(row) + 1 < n:
        return []
    prefix = tuple(row[len(row) + 1 - n :])
    return [row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i : i + n - 1]) == prefix]


def no_repeat_ngram(logits: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    """-inf for every token that would repeat an n-gram of ids (per row)."""
    out = logits.clone()
    for b, row in enumerate(ids.tolist()):
        out[b, banned_ngram_tokens(row, n)] = NEG_INF
    return out


def bad_words(logits: torch.Tensor, ids: torch.Tensor, banned: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """-inf for the last token of each banned sequence whose other tokens end ids (single tokens: always)."""
    out = logits.clone()
    for b, row in enumerate(ids.tolist()):
        for seq in banned:
            head = list(seq[:-1])
            if not head or row[len(row) - len(head) :] == head:
                out[b, seq[-1]] = NEG_INF
    return out


def forced_eos(logits: torch.Tensor, ids: torch.Tensor, max_length: int, eos: int) -> torch.Tensor:
    """At the last step (len(ids) == max_length - 1) only EOS remains: all -inf, EOS 0."""
    if ids.shape[-1] != max_length - 1:
        return logits
    out = torch.full_like(logits, NEG_INF)
    out[:, eos] = 0.0
    return out


def build_processors(config: GenerationConfig, max_length: int | None = None) -> list[LogitsProcessor]:
    """The processors ``config`` asks for, in the module's order; max_length = prompt + max_new_tokens (forced EOS)."""
    c = config
    wanted: list[tuple[bool, LogitsProcessor]] = [
        (c.repetition_penalty not in (None, 1.0), lambda z, ids: repetition_penalty(z, ids, c.repetition_penalty)),
        (bool(c.no_repeat_ngram_size), lambda z, ids: no_repeat_ngram(z, ids, c.no_repeat_ngram_size)),
        (bool(c.bad_words_ids), lambda z, ids: bad_words(z, ids, c.bad_words_ids)),
        (c.forced_eos_token_id is not None and max_length is not None,
         lambda z, ids: forced_eos(z, ids, max_length, c.forced_eos_token_id)),
    ]
    if c.do_sample:
        wanted += [
            (c.temperature != 1.0, lambda z, ids: temperature(z, c.temperature)),
            (c.top_k is not None, lambda z, ids: top_k(z, c.top_k)),
            (c.top_p is not None and c.top_p < 1.0, lambda z, ids: top_p(z, c.top_p)),
            (c.min_p is not None, lambda z, ids: min_p(z, c.min_p)),
            (c.typical_p is not None and c.typical_p < 1.0, lambda z, ids: typical_p(z, c.typical_p)),
        ]
    return [processor for on, processor in wanted if on]


def process(logits: torch.Tensor, ids: torch.Tensor, processors: list[LogitsProcessor]) -> torch.Tensor:
    """Run the processors in order on logits [batch, vocab] given the ids so far [batch, seq]."""
    for processor in processors:
        logits = processor(logits, ids)
    return logits


def make_generator(seed: int | None) -> torch.Generator:
    """A torch.Generator seeded with ``seed`` (fresh entropy when None)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def next_token(
    logits: torch.Tensor,
    processors: list[LogitsProcessor],
    generator: torch.Generator | None,
    ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The next token ids [batch]: argmax of the processed logits without a generator, else one draw from their softmax."""
    if processors:
        logits = process(logits, ids if ids is not None else torch.zeros(logits.shape[0], 0, dtype=torch.long), processors)
    if generator is None:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float(), dim=-1)  # [batch, vocab]
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]
