"""The generation loop: prefill the prompt once, then one token at a time through the KV cache.

    prompt ids --prefill--> cache filled, logits of the last position --choose--> token 1
    token t    --decode---> cache += 1 slot,  logits                  --choose--> token t+1
    ... until EOS, max_new_tokens, or a stop string in the text.

Every model family decodes through :func:`decode_tokens`: it needs only
``model(ids, cache=..., last_only=True) -> logits`` and ``model.spec``. An encoder-decoder (T5, BART)
first becomes such a decoder (:func:`decoder_prompts`): the prompt is encoded once as the source,
``model.bind`` holds it, and the decoder's own prompt is its start token.
Batches (:func:`decode_batch`) are left-padded with an attention mask, each row stopping on its own;
beam and contrastive search live in ``search``, speculative decoding in ``speculative``;
:func:`generate` picks the strategy from the config and streams text.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from llmkit.errors import LlmkitError
from llmkit.generate.cache import CacheConfig, make_cache
from llmkit.generate.config import GenerationConfig
from llmkit.generate.sampling import build_processors, make_generator, next_token
from llmkit.heap import release_freed_heap

FinishReason = Literal["eos", "length", "stop"]


@dataclass(frozen=True)
class GenerationResult:
    """What one generation produced, and how fast (decode speed excludes the prefill)."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    prefill_tokens_per_second: float
    tokens_per_second: float
    finish_reason: FinishReason
    sequences: tuple[Sequence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: text, token_ids (first sequence), prompt_tokens, speeds, and every sequence."""
        sequences = self.sequences or (Sequence(self.text, self.token_ids, self.finish_reason),)
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "prompt_tokens": self.prompt_tokens,
            "prefill_tokens_per_second": self.prefill_tokens_per_second,
            "tokens_per_second": self.tokens_per_second,
            "sequences": [s.to_json() for s in sequences],
        }


@dataclass(frozen=True)
class Sequence:
    """One returned sequence: its text, new token ids, why it ended, and its beam score (beam search only)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"text": self.text, "token_ids": list(self.token_ids), "finish_reason": self.finish_reason}
        return out | ({"score": self.score} if self.score is not None else {})


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The activation dtype, which the KV cache holds (float32 unless the model was cast)."""
    return model.activation_dtype


def new_token_budget(model: torch.nn.Module, prompt_len: int, max_new_tokens: int) -> int:
    """max_new_tokens, clipped so prompt + new tokens fit the context window (spec.max_positions)."""
    window = model.spec.max_positions
    if prompt_len == 0:
        raise LlmkitError("the prompt is empty: give at least one token")
    if prompt_len >= window:
        raise LlmkitError(f"the prompt has {prompt_len} tokens; the model's context window is {window}")
    return min(max_new_tokens, window - prompt_len)


def sliding_fits(cache_config: CacheConfig, tokens: int, what: str) -> None:
    """Raise unless a sliding cache's window holds ``tokens`` tokens (``what`` cannot run on a wrapped ring)."""
    if cache_config.kind == "sliding" and tokens > cache_config.window:
        raise LlmkitError(f"--cache sliding with {what} needs --cache-window >= {tokens} (got {cache_config.window}); "
                          "raise the window or use another --cache kind")


def sliding_limits(model: torch.nn.Module, cache_config: CacheConfig, tokens: int, padded: bool = False) -> None:
    """Refuse a sliding cache too small for ``tokens`` where its ring cannot wrap: padded batches (the padding mask
    spans every position, not the ring's) and T5's relative position bias (it spans every past token)."""
    if padded:
        sliding_fits(cache_config, tokens, "prompts of different lengths in one batch")
    if model.spec.position == "t5":
        sliding_fits(cache_config, tokens, "T5's relative position bias")


# The decoder's first token when the spec does not name one: transformers' config defaults
# (T5Config: decoder_start_token_id = pad_token_id = 0; BartConfig: decoder_start_token_id = 2, its EOS).
DECODER_START = {"t5": 0, "bart": 2}


def decoder_start_id(spec) -> int:
    """The token an encoder-decoder's decoder starts from: spec.decoder_start_id if the spec has it, else the family's."""
    if spec.decoder_start_id is not None:  # config.json's decoder_start_token_id
        return spec.decoder_start_id
    if spec.hf_model_type not in DECODER_START:
        raise LlmkitError(f"model {spec.name!r}: no decoder start token known for model type {spec.hf_model_type!r} "
                          f"(known: {', '.join(DECODER_START)})")
    return DECODER_START[spec.hf_model_type]


def bind_sources(model: torch.nn.Module, sources: list[list[int]], copies: int = 1) -> torch.nn.Module:
    """The encoder-decoder's decoder view with the sources encoded once: right-padded and masked, each row ``copies`` times."""
    longest = max(len(s) for s in sources)
    if min(len(s) for s in sources) == 0:
        raise LlmkitError("the prompt is empty: give at least one token")
    if longest > model.spec.max_positions:
        raise LlmkitError(f"the prompt has {longest} tokens; the encoder takes at most {model.spec.max_positions}")
    ids = torch.tensor([s + [0] * (longest - len(s)) for s in sources]).repeat_interleave(copies, 0)  # [rows, src]
    mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in sources]).repeat_interleave(copies, 0)
    return model.bind(ids, mask if not bool(mask.all()) else None)


def decoder_prompts(
    model: torch.nn.Module, prompts: list[list[int]], copies: int = 1
) -> tuple[torch.nn.Module, list[list[int]]]:
    """(model to decode with, decoder prompts): a decoder and the prompts as they are; an encoder-decoder bound to
    the prompts as sources (``copies`` rows each: beams, contrastive candidates) and its decoder start token each."""
    if model.spec.family != "encoder-decoder" or not hasattr(model, "bind"):  # a decoder, or one already bound
        return model, prompts
    return bind_sources(model, prompts, copies), [[decoder_start_id(model.spec)] for _ in prompts]


RELEASE_AFTER_TOKENS = 64  # a prefill of this many tokens or more gives its freed scratch back (llmkit.heap)


def feed(model: torch.nn.Module, cache, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Run ids [batch, seq] through the model into ``cache``: last-position logits [batch, vocab].

    A sliding-window cache takes what fits its window at once and then one token at a time. After a long
    prefill the heap pages its activations used go back to the system: decoding never needs that much again.
    """
    room = getattr(cache, "max_len", None)
    if attention_mask is None and hasattr(cache, "sinks") and cache.length + ids.shape[1] > room:
        first = max(room - cache.length, 0)
        logits = model(ids[:, :first], cache=cache, last_only=True)[:, -1] if first else None
        for t in range(first, ids.shape[1]):
            logits = model(ids[:, t : t + 1], cache=cache, last_only=True)[:, -1]
        return logits
    logits = model(ids, attention_mask=attention_mask, cache=cache, last_only=True)[:, -1]  # [batch, vocab]
    if ids.numel() >= RELEASE_AFTER_TOKENS:
        release_freed_heap()
    return logits


@torch.inference_mode()
def decode_tokens(
    model: torch.nn.Module, prompt_ids: list[int], config: GenerationConfig, cache_config: CacheConfig = CacheConfig()
) -> Iterator[int]:
    """Yield new token ids one by one (batch 1, greedy or sampling); the consumer stops early by closing the iterator."""
    model, (prompt_ids,) = decoder_prompts(model, [prompt_ids])
    budget = new_token_budget(model, len(prompt_ids), config.max_new_tokens)
    sliding_limits(model, cache_config, len(prompt_ids) + budget)
    cache = make_cache(cache_config, model.spec, 1, len(prompt_ids) + budget, model_dtype(model))
    processors = build_processors(config, len(prompt_ids) + budget)
    generator = make_generator(config.seed) if config.do_sample else None
    ids = torch.tensor([prompt_ids])  # [1, prompt]
    logits = feed(model, cache, ids)  # [1, vocab]
    for step in range(budget):
        token = next_token(logits, processors, generator, ids)  # [1]
        yield int(token)
        if step + 1 < budget:
            ids = torch.cat([ids, token[:, None]], dim=1) if processors else ids
            logits = model(token[:, None], cache=cache, last_only=True)[:, -1]


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [batch, longest], attention_mask [batch, longest]): shorter prompts padded on the left, mask 0 there."""
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@torch.inference_mode()
def decode_batch(
    model: torch.nn.Module,
    prompts: list[list[int]],
    config: GenerationConfig,
    eos_ids: tuple[int, ...] = (),
    cache_config: CacheConfig = CacheConfig(),
) -> list[list[int]]:
    """New token ids for each prompt, all decoded in one left-padded batch; a row stops at EOS (kept) on its own."""
    model, prompts = decoder_prompts(model, prompts)
    budget = min(new_token_budget(model, len(p), config.max_new_tokens) for p in prompts)
    ids, mask = left_pad(prompts, eos_ids[0] if eos_ids else 0)  # [batch, longest]
    sliding_limits(model, cache_config, ids.shape[1] + budget, padded=not bool(mask.all()))
    cache = make_cache(cache_config, model.spec, len(prompts), ids.shape[1] + budget, model_dtype(model))
    processors = build_processors(config, ids.shape[1] + budget)
    generator = make_generator(config.seed) if config.do_sample else None
    logits = feed(model, cache, ids, mask)  # [batch, vocab]
    out: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    eos = torch.tensor(eos_ids, dtype=torch.long)
    for step in range(budget):
        token = next_token(logits, processors, generator, ids)  # [batch]
        for b in (~done).nonzero()[:, 0].tolist():
            out[b].append(int(token[b]))
        done |= torch.isin(token, eos)
        if bool(done.all()) or step + 1 == budget:
            break
        ids, mask = torch.cat([ids, token[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        logits = model(token[:, None], attention_mask=mask, cache=cache, last_only=True)[:, -1]
    return out


def stop_index(text: str, stops: tuple[str, ...]) -> int:
    """Index of the earliest stop string in ``text`` (-1 if none)."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could still begin a stop string (not yet safe to stream)."""
    longest = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest


def finish_text(tokenizer: Any, tokens: list[int], eos: set[int], stop: tuple[str, ...]) -> Sequence:
    """One finished sequence: tokens up to and including EOS, text cut before the first stop string."""
    for i, t in enumerate(tokens):
        if t in eos:
            tokens, reason = tokens[: i + 1], "eos"
            break
    else:
        reason = "length"
    text = tokenizer.decode([t for t in tokens if t not in eos])
    cut = stop_index(text, stop)
    return Sequence(text[:cut], tuple(tokens), "stop") if cut >= 0 else Sequence(text, tuple(tokens), reason)


def token_stream(model, prompt_ids: list[int], config: GenerationConfig, draft, cache_config: CacheConfig,
                 stats=None) -> Iterator[int]:
    """The token iterator of the strategy the config (and a draft model, if any) asks for."""
    if draft is not None:
        from llmkit.generate.speculative import speculative_tokens

        if cache_config.kind != "contiguous":
            raise LlmkitError(f"--cache {cache_config.kind} with --draft (speculative decoding) is not supported: "
                              "speculative decoding keeps contiguous caches")
        target, (decoder_ids,) = decoder_prompts(model, [prompt_ids])
        return speculative_tokens(target, decoder_prompts(draft, [prompt_ids])[0], decoder_ids, config, stats)
    if config.strategy == "contrastive":
        from llmkit.generate.search import contrastive_tokens

        return contrastive_tokens(model, prompt_ids, config, cache_config)
    return decode_tokens(model, prompt_ids, config, cache_config)


def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt_ids: list[int],
    config: GenerationConfig = GenerationConfig(),
    on_text: Callable[[str], None] | None = None,
    draft: torch.nn.Module | None = None,
    cache_config: CacheConfig = CacheConfig(),
    stats=None,
) -> GenerationResult:
    """Generate from ``prompt_ids``, streaming text to ``on_text``; stops at EOS, max_new_tokens or a stop string.

    Beam search and several sampled sequences return whole sequences at the end (on_text gets the first);
    everything else streams token by token. ``draft``: a draft model for speculative decoding.
    """
    eos = set(config.eos_ids if config.eos_ids is not None else [tokenizer.eos_id])
    if config.strategy == "beam" or config.num_return_sequences > 1:
        return generate_sequences(model, tokenizer, prompt_ids, config, eos, on_text, cache_config)
    from llmkit.tokenize import StreamDecoder

    stream, text, sent, tokens = StreamDecoder(tokenizer), "", 0, []
    finish: FinishReason = "length"
    start = time.perf_counter()
    first = last = start
    for token in token_stream(model, prompt_ids, config, draft, cache_config, stats):
        last = time.perf_counter()
        first = last if not tokens else first
        tokens.append(token)
        if token in eos:
            finish = "eos"
            break
        text += stream.feed(token)
        cut = stop_index(text, config.stop)
        if cut >= 0:
            text, finish = text[:cut], "stop"
            break
        if len(tokens) >= config.max_new_tokens:
            break
        safe = len(text) - held_back(text, config.stop)  # a possible stop-string start waits
        if on_text is not None and safe > sent:
            on_text(text[sent:safe])
            sent = safe
    if finish != "stop":
        text += stream.flush()
    if on_text is not None and len(text) > sent:
        on_text(text[sent:])
    return GenerationResult(
        text=text,
        token_ids=tuple(tokens),
        prompt_tokens=len(prompt_ids),
        prefill_tokens_per_second=len(prompt_ids) / (first - start) if first > start else 0.0,
        tokens_per_second=(len(tokens) - 1) / (last - first) if last > first else 0.0,
        finish_reason=finish,
    )


def generate_sequences(model, tokenizer, prompt_ids: list[int], config: GenerationConfig, eos: set[int],
                       on_text, cache_config: CacheConfig) -> GenerationResult:
    """Beam search, or num_return_sequences sampled sequences in one batch: every sequence returned."""
    start = time.perf_counter()
    if config.strategy == "beam":
        from llmkit.generate.search import beam_search

        found = beam_search(model, prompt_ids, config, tuple(eos), cache_config)
    else:
        rows = decode_batch(model, [prompt_ids] * config.num_return_sequences, config, tuple(eos), cache_config)
        found = [(row, None) for row in rows]
    elapsed = time.perf_counter() - start
    sequences = tuple(dataclasses.replace(finish_text(tokenizer, ids, eos, config.stop), score=score)
                      for ids, score in found)
    if on_text is not None:
        on_text(sequences[0].text)
    generated = sum(len(s.token_ids) for s in sequences)
    return GenerationResult(
        text=sequences[0].text, token_ids=sequences[0].token_ids, prompt_tokens=len(prompt_ids),
        prefill_tokens_per_second=0.0, tokens_per_second=generated / elapsed if elapsed > 0 else 0.0,
        finish_reason=sequences[0].finish_reason, sequences=sequences,
    )


def generate_batch(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: list[list[int]],
    config: GenerationConfig = GenerationConfig(),
    cache_config: CacheConfig = CacheConfig(),
) -> list[GenerationResult]:
    """One result per prompt, the prompts decoded together in one left-padded batch (greedy or sampling)."""
    eos = set(config.eos_ids if config.eos_ids is not None else [tokenizer.eos_id])
    start = time.perf_counter()
    rows = decode_batch(model, prompts, config, tuple(sorted(eos)), cache_config)
    speed = sum(len(r) for r in rows) / (time.perf_counter() - start)
    results = []
    for prompt, row in zip(prompts, rows):
        seq = finish_text(tokenizer, row, eos, config.stop)
        results.append(GenerationResult(seq.text, seq.token_ids, len(prompt), 0.0, speed, seq.finish_reason, (seq,)))
    return results
