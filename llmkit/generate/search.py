"""Beam search and contrastive search (sheet section 9), one prompt at a time.

Beam search keeps the num_beams best partial sequences by summed log-probability; a finished
hypothesis (EOS, or the length limit) is scored sum_logprobs / new_len ** length_penalty, and the
search ends as transformers' ``_beam_search`` ends it (``early_stopping`` True, False or "never").
The KV cache follows the surviving beams with ``cache.reorder(beam_index)`` (index_select on the batch dim).

Contrastive search (Su et al. 2022, "A Contrastive Framework for Neural Text Generation"):

    x_t = argmax_{v in top-k(p)} (1 - alpha) * p(v | x_<t) - alpha * max_j cos(h_v, h_j)

h_v is the last hidden state (after the final norm) of candidate v, h_j those of every earlier token:
the degeneration penalty punishes a candidate that looks like the context.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from llmkit.generate.cache import CacheConfig, make_cache
from llmkit.generate.config import GenerationConfig
from llmkit.generate.sampling import build_processors, process

NEG = -1.0e9  # transformers' "impossible" score


def length_normalised(sum_logprobs: torch.Tensor, new_len: int, length_penalty: float) -> torch.Tensor:
    """Beam hypothesis score: sum log p / new_len ** length_penalty (Wu et al. 2016; transformers' form)."""
    return sum_logprobs / (new_len**length_penalty)


@torch.inference_mode()
def beam_search(
    model: torch.nn.Module,
    prompt_ids: list[int],
    config: GenerationConfig,
    eos_ids: tuple[int, ...] = (),
    cache_config: CacheConfig = CacheConfig(),
) -> list[tuple[list[int], float]]:
    """The num_return_sequences best hypotheses as (new token ids, score), best first (transformers' algorithm)."""
    from llmkit.generate.loop import decoder_prompts, feed, model_dtype, new_token_budget, sliding_limits

    n = config.num_beams
    model, (prompt_ids,) = decoder_prompts(model, [prompt_ids], copies=n)  # an encoder-decoder: one source row per beam
    p_len = len(prompt_ids)
    max_length = p_len + new_token_budget(model, p_len, config.max_new_tokens)
    sliding_limits(model, cache_config, max_length)
    keep = max(2, 1 + len(eos_ids)) * n  # candidates per step: enough to keep n running after EOS
    processors = build_processors(config, max_length)
    cache = make_cache(cache_config, model.spec, n, max_length, model_dtype(model))
    running = torch.tensor(prompt_ids).repeat(n, 1)  # [beams, cur_len]
    running_scores = torch.tensor([0.0] + [NEG] * (n - 1))  # only beam 0 is live at the start
    done_seqs, done_scores = [[] for _ in range(n)], torch.full((n,), NEG)
    done = torch.zeros(n, dtype=torch.bool)
    eos, improvable = torch.tensor(eos_ids, dtype=torch.long), True
    logits = feed(model, cache, running)  # [beams, vocab]
    for cur_len in range(p_len, max_length):
        log_probs = process(torch.log_softmax(logits.float(), dim=-1), running, processors)  # [beams, vocab]
        top_scores, top_index = (log_probs + running_scores[:, None]).view(-1).topk(keep)  # [keep]
        beam, token = top_index // log_probs.shape[-1], top_index % log_probs.shape[-1]
        candidates = torch.cat([running[beam], token[:, None]], dim=1)  # [keep, cur_len + 1]
        hits = torch.isin(token, eos) | (cur_len + 1 >= max_length)  # [keep]
        # the n best candidates that did not just finish keep running
        live_scores = top_scores + hits.float() * NEG
        survivors = live_scores.topk(n).indices
        running, running_scores, beam_index = candidates[survivors], live_scores[survivors], beam[survivors]
        # finished candidates among the top n join the finished hypotheses, if good enough
        new_len = cur_len + 1 - p_len
        finished = length_normalised(top_scores, new_len, config.length_penalty)
        blocked = (bool(done.all()) and config.early_stopping is True) or not improvable
        finished = finished + NEG * (blocked | ~(hits & (torch.arange(keep) < n))).float()
        merged_scores = torch.cat([done_scores, finished])
        merged_seqs = done_seqs + [c[p_len:].tolist() for c in candidates]
        merged_done = torch.cat([done, hits & (torch.arange(keep) < n)])
        best = merged_scores.topk(n).indices
        done_scores, done, done_seqs = merged_scores[best], merged_done[best], [merged_seqs[i] for i in best.tolist()]
        improvable = improvable and still_improvable(running_scores, done_scores, done, cur_len + 1, max_length,
                                                     p_len, config)
        stop = not improvable or (bool(done.all()) and config.early_stopping is True) or bool(hits.all())
        if stop:
            break
        cache.reorder(beam_index)
        logits = model(running[:, -1:], cache=cache, last_only=True)[:, -1]
    return [(done_seqs[i], float(done_scores[i])) for i in range(config.num_return_sequences)]


def still_improvable(running_scores: torch.Tensor, done_scores: torch.Tensor, done: torch.Tensor, cur_len: int,
                     max_length: int, p_len: int, config: GenerationConfig) -> bool:
    """Can the best running beam still beat the worst finished one? (transformers' early-stop heuristic)."""
    if config.early_stopping == "never" and config.length_penalty > 0.0:
        best_len = max_length - p_len
    else:
        best_len = cur_len - p_len
    best_possible = float(running_scores[0]) / (best_len**config.length_penalty)
    worst_done = torch.where(done, done_scores.min(), torch.tensor(NEG))
    return bool((best_possible > worst_done).any())


def degeneration_penalty(candidates: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """max_j cos(h_v, h_j) for each candidate: candidates [k, d], context [t, d] -> [k]."""
    c = candidates / candidates.norm(dim=-1, keepdim=True)
    h = context / context.norm(dim=-1, keepdim=True)
    return (c @ h.T).max(dim=-1).values  # [k]


def contrastive_scores(probs: torch.Tensor, candidates: torch.Tensor, context: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j) for the k candidates [k] (Su et al. 2022, eq. 5)."""
    return (1.0 - alpha) * probs - alpha * degeneration_penalty(candidates, context)


def last_hidden_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is the last hidden state: the (decoder) stack's final norm, or its last block when
    the stack has none (BART is post-LN); a BoundDecoder's is its encoder-decoder's decoder stack's."""
    from llmkit.nn.model import BoundDecoder

    stack = model.model if isinstance(model, BoundDecoder) else model
    return stack.norm if stack.norm is not None else stack.blocks[-1]


class LastHidden:
    """Captures the model's last hidden states (the final norm's output, else the last block's) with a forward hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.states: torch.Tensor | None = None
        self.handle = last_hidden_module(model).register_forward_hook(self.keep)

    def keep(self, module, inputs, output) -> None:
        self.states = output  # [batch, seq, d_model]

    def remove(self) -> None:
        self.handle.remove()


@torch.inference_mode()
def contrastive_tokens(
    model: torch.nn.Module, prompt_ids: list[int], config: GenerationConfig, cache_config: CacheConfig = CacheConfig()
) -> Iterator[int]:
    """Yield contrastive-search tokens (penalty_alpha, top_k): one k-row forward per step, one cache row kept."""
    from llmkit.generate.loop import decoder_prompts, model_dtype, new_token_budget, sliding_fits, sliding_limits

    k, alpha = config.top_k, config.penalty_alpha
    model, (prompt_ids,) = decoder_prompts(model, [prompt_ids], copies=k)  # an encoder-decoder: one source row per candidate
    budget = new_token_budget(model, len(prompt_ids), config.max_new_tokens)
    sliding_fits(cache_config, len(prompt_ids), "contrastive search (the prompt is fed in one piece)")
    sliding_limits(model, cache_config, len(prompt_ids) + budget)
    processors = build_processors(config, len(prompt_ids) + budget)
    cache = make_cache(cache_config, model.spec, k, len(prompt_ids) + budget, model_dtype(model))
    hidden = LastHidden(model)
    try:
        ids = torch.tensor([prompt_ids])  # [1, prompt]
        logits = model(ids.repeat(k, 1), cache=cache)[:1, -1]  # [1, vocab]; every row holds the prompt
        context = hidden.states[0]  # [prompt, d_model]
        for step in range(budget):
            probs = torch.softmax(process(logits, ids, processors), dim=-1)
            top_probs, top_ids = probs.topk(k, dim=-1)  # [1, k]
            next_logits = model(top_ids.view(k, 1), cache=cache, last_only=True)[:, -1]  # [k, vocab]
            candidates = hidden.states[:, -1]  # [k, d_model]
            best = int(contrastive_scores(top_probs[0], candidates, context, alpha).argmax())
            token = int(top_ids[0, best])
            yield token
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            context = torch.cat([context, candidates[best : best + 1]])
            logits = next_logits[best : best + 1]
            cache.reorder(torch.full((k,), best), start=cache.length - 1)  # only the newest slot differs
    finally:
        hidden.remove()
