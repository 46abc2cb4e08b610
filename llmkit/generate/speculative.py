"""Speculative decoding: a cheap draft proposes k tokens, the target checks them all in one forward pass.

    draft:   d_1..d_k  with probabilities q_i(.)             (k small forwards of the draft)
    target:  p_1..p_{k+1} from ONE forward over [pending, d_1..d_k]
    greedy:  accept d_i while d_i == argmax p_i; then emit argmax p_i (a correction, or the bonus p_{k+1})
    sample:  accept d_i with probability min(1, p_i(d_i) / q_i(d_i)); on the first rejection emit a
             draw from norm(max(0, p_i - q_i)); if all k pass, a bonus draw from p_{k+1}
             (Leviathan et al. 2023, Chen et al. 2023: the emitted tokens are distributed exactly as p)

Rejected drafts are rolled back with ``cache.crop``. Self-speculation (:func:`make_draft`) uses the
target itself, quantized to int8/int4 or cut to its first N layers (LayerSkip-style, weights shared).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from llmkit.errors import LlmkitError
from llmkit.generate.cache import ContiguousKVCache
from llmkit.generate.config import GenerationConfig
from llmkit.generate.sampling import build_processors, make_generator, process


@dataclass
class Acceptance:
    """Running count of drafted and accepted tokens: rate = accepted / drafted."""

    drafted: int = 0
    accepted: int = 0

    @property
    def rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


def accept_probability(p: torch.Tensor, q: torch.Tensor, token: int) -> float:
    """min(1, p(x) / q(x)) for the drafted token x (Leviathan et al. 2023, alg. 1)."""
    return min(1.0, float(p[token] / q[token])) if q[token] > 0 else 1.0


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): where a rejected draft resamples from (p itself when p == q)."""
    r = (p - q).clamp(min=0)
    return r / r.sum() if r.sum() > 0 else p


def verify_token(p: torch.Tensor, q: torch.Tensor, token: int, generator: torch.Generator) -> tuple[bool, int]:
    """(accepted, emitted token) for one drafted token: keep it w.p. min(1, p/q), else draw from the residual."""
    if float(torch.rand((), generator=generator)) < accept_probability(p, q, token):
        return True, token
    return False, int(torch.multinomial(residual(p, q), 1, generator=generator))


def truncated(model: nn.Module, n_layers: int) -> nn.Module:
    """The model's first n_layers blocks with its own embedding, final norm and head (shared, not copied)."""
    if not 1 <= n_layers < model.spec.n_layers:
        raise LlmkitError(f"--draft layers:N needs 1 <= N < {model.spec.n_layers}; got {n_layers}")
    draft = copy.copy(model)
    draft._modules = dict(model._modules)  # own module table, same module objects
    draft.blocks = nn.ModuleList(list(model.blocks)[:n_layers])
    draft.spec = dataclasses.replace(model.spec, n_layers=n_layers)
    return draft


def draft_layers(draft: str) -> int | None:
    """N of 'layers:N' (None for any other draft); a bad N is an error before anything loads."""
    if not draft.startswith("layers:"):
        return None
    try:
        return int(draft.split(":", 1)[1])
    except ValueError:
        raise LlmkitError(f"--draft layers:N needs an integer N; got {draft!r}") from None


def make_draft(model: nn.Module, draft: str) -> nn.Module:
    """The draft for ``--draft``: 'int8' / 'int4' (the model quantized), 'layers:N' (its first N layers), or a model path."""
    if draft in ("int8", "int4"):
        from llmkit.quant.linear import quantize_linears

        quantized = copy.deepcopy(model)
        quantize_linears(quantized, draft)
        return quantized.eval()
    n = draft_layers(draft)
    if n is not None:
        return truncated(model, n)
    from llmkit.load import load_model

    other = load_model(draft)
    if other.spec.vocab_size != model.spec.vocab_size:
        raise LlmkitError(f"the draft {draft} has vocabulary {other.spec.vocab_size}, the target "
                          f"{model.spec.vocab_size}: a draft must share the target's tokenizer")
    return other


def pending_logits(model: nn.Module, cache, seq: list[int]) -> torch.Tensor:
    """Feed the tokens of ``seq`` the cache has not seen; logits of every fed position [fed, vocab]."""
    return model(torch.tensor([seq[cache.length :]]), cache=cache)[0]


@torch.inference_mode()
def speculative_tokens(
    target: nn.Module,
    draft: nn.Module,
    prompt_ids: list[int],
    config: GenerationConfig,
    stats: Acceptance | None = None,
) -> Iterator[int]:
    """Yield the target's tokens (greedy, or sampled from exactly its distribution), k drafted at a time."""
    from llmkit.generate.loop import model_dtype, new_token_budget

    budget = new_token_budget(target, len(prompt_ids), config.max_new_tokens)
    room = len(prompt_ids) + budget + config.num_assistant_tokens + 1
    t_cache = ContiguousKVCache(target.spec, 1, room, model_dtype(target))
    d_cache = ContiguousKVCache(draft.spec, 1, room, model_dtype(draft))
    processors = build_processors(config, len(prompt_ids) + budget)
    generator = make_generator(config.seed) if config.do_sample else None
    stats = stats if stats is not None else Acceptance()
    seq, produced = list(prompt_ids), 0
    if len(prompt_ids) > 1:  # the prompt but its last token, once: each round then feeds the target k + 1 tokens
        head = torch.tensor([prompt_ids[:-1]])  # (within the one-call C step's reach), the draft one or two
        target(head, cache=t_cache, last_only=True)
        draft(head, cache=d_cache, last_only=True)
    while produced < budget:
        k = min(config.num_assistant_tokens, budget - produced - 1)
        drafted, q = propose(draft, d_cache, seq, k, processors, generator)
        t_logits = pending_logits(target, t_cache, seq + drafted)[-(k + 1) :]  # [k + 1, vocab]
        new = verify(t_logits, seq, drafted, q, processors, generator)
        stats.drafted, stats.accepted = stats.drafted + k, stats.accepted + len(new) - 1
        yield from new
        seq += new
        produced += len(new)
        t_cache.crop(len(seq) - 1)  # keep what was computed from accepted tokens only
        d_cache.crop(len(seq) - 1)


def choose(logits: torch.Tensor, ids: list[int], processors, generator) -> tuple[int, torch.Tensor | None]:
    """(token, its distribution or None when greedy) from logits [vocab] after ``ids``."""
    z = process(logits[None], torch.tensor([ids]), processors)[0]
    if generator is None:
        return int(z.argmax()), None
    probs = torch.softmax(z.float(), dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator)), probs


def propose(draft, cache, seq: list[int], k: int, processors, generator) -> tuple[list[int], list]:
    """k draft tokens after ``seq`` and the draft's distribution for each (None when greedy)."""
    drafted, q = [], []
    if k == 0:
        return drafted, q
    logits = pending_logits(draft, cache, seq)[-1]
    for i in range(k):
        token, probs = choose(logits, seq + drafted, processors, generator)
        drafted.append(token)
        q.append(probs)
        if i + 1 < k:
            logits = draft(torch.tensor([[token]]), cache=cache, last_only=True)[0, -1]
    return drafted, q


def verify(t_logits: torch.Tensor, seq: list[int], drafted: list[int], q: list, processors, generator) -> list[int]:
    """The tokens to emit: the accepted drafts, then one correction (at a rejection) or bonus token."""
    out: list[int] = []
    for i, token in enumerate(drafted):
        z = process(t_logits[i][None], torch.tensor([seq + out]), processors)[0]
        if generator is None:
            target_token = int(z.argmax())
            out.append(target_token)
            if target_token != token:
                return out
        else:
            accepted, emitted = verify_token(torch.softmax(z.float(), dim=-1), q[i], token, generator)
            out.append(emitted)
            if not accepted:
                return out
    bonus, _ = choose(t_logits[len(drafted)], seq + out, processors, generator)
    return out + [bonus]
