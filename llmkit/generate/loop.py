"""The generation loop: prefill the prompt once, then one token at a time through the KV cache.

    prompt ids --prefill--> cache filled, logits of the last position --choose--> token 1
    token t    --decode---> cache += 1 slot,  logits                  --choose--> token t+1
    ... until EOS, max_new_tokens, or a stop string in the text.

Every model family decodes through :func:`decode_tokens`: it needs only
``model(ids, cache=..., last_only=True) -> logits`` and ``model.spec``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import torch

from llmkit.errors import LlmkitError
from llmkit.generate.cache import ContiguousKVCache
from llmkit.generate.config import GenerationConfig
from llmkit.generate.sampling import build_processors, make_generator, next_token

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

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` object: text, token_ids, prompt_tokens, prefill and decode tokens/s."""
        return {
            "text": self.text,
            "token_ids": list(self.token_ids),
            "prompt_tokens": self.prompt_tokens,
            "prefill_tokens_per_second": self.prefill_tokens_per_second,
            "tokens_per_second": self.tokens_per_second,
        }


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


@torch.inference_mode()
def decode_tokens(model: torch.nn.Module, prompt_ids: list[int], config: GenerationConfig) -> Iterator[int]:
    """Yield new token ids one by one (batch 1); the consumer stops early by closing the iterator."""
    budget = new_token_budget(model, len(prompt_ids), config.max_new_tokens)
    cache = ContiguousKVCache(model.spec, 1, len(prompt_ids) + budget, model_dtype(model))
    processors = build_processors(config)
    generator = make_generator(config.seed) if config.do_sample else None
    ids = torch.tensor([prompt_ids])  # [1, prompt]
    logits = model(ids, cache=cache, last_only=True)[:, -1]  # [1, vocab]
    for step in range(budget):
        token = next_token(logits, processors, generator)  # [1]
        yield int(token)
        if step + 1 < budget:
            logits = model(token[:, None], cache=cache, last_only=True)[:, -1]


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


def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt_ids: list[int],
    config: GenerationConfig = GenerationConfig(),
    on_text: Callable[[str], None] | None = None,
) -> GenerationResult:
    """Generate from ``prompt_ids``, streaming text to ``on_text``; stops at EOS, max_new_tokens or a stop string."""
    from llmkit.tokenize import StreamDecoder

    eos = set(config.eos_ids if config.eos_ids is not None else [tokenizer.eos_id])
    stream, text, sent, tokens = StreamDecoder(tokenizer), "", 0, []
    finish: FinishReason = "length"
    start = time.perf_counter()
    first = last = start
    for token in decode_tokens(model, prompt_ids, config):
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
        safe = len(text) - held_back(text, config.stop)  # a possible stop-string start waits
        if on_text is not None and safe > sent:
            on_text(text[sent:safe])
            sent = safe
    if finish != "stop":
        text += stream.flush()
    if on_text is not None and len(text) > sent:
        on_text(text[sent:])
    prefill_s, decode_s = first - start, last - first
    return GenerationResult(
        text=text,
        token_ids=tuple(tokens),
        prompt_tokens=len(prompt_ids),
        prefill_tokens_per_second=len(prompt_ids) / prefill_s if prefill_s > 0 else 0.0,
        tokens_per_second=(len(tokens) - 1) / decode_s if decode_s > 0 else 0.0,
        finish_reason=finish,
    )
