"""Speculative decoding: exactly the target's distribution (enumerated), and its greedy output (SmolLM2)."""

from __future__ import annotations

import pytest
import torch

from llmkit.errors import LlmkitError
from llmkit.generate.config import GenerationConfig
from llmkit.generate.loop import decode_tokens
from llmkit.generate.sampling import build_processors, make_generator, process
from llmkit.generate.speculative import (
    Acceptance,
    accept_probability,
    make_draft,
    residual,
    speculative_tokens,
    truncated,
    verify_token,
)


def _emitted_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """P(emitted = x), enumerating the drafted token d ~ q: accept d w.p. min(1, p/q), else draw the residual."""
    out = torch.zeros_like(p, dtype=torch.float64)
    for d in range(len(p)):
        if q[d] == 0:
            continue
        a = accept_probability(p, q, d)
        out[d] += q[d] * a
        out += q[d] * (1 - a) * residual(p, q).double()
    return out


@pytest.mark.parametrize("seed", range(6))
def test_one_step_emits_exactly_the_target_distribution(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64) * 2, 0)
    q = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64) * 2, 0)
    if seed == 4:
        q[2] = 0.0
        q /= q.sum()  # the draft never proposes a token the target likes
    if seed == 5:
        q = p.clone()  # a perfect draft: everything accepted
    assert torch.allclose(_emitted_distribution(p, q), p, atol=1e-12)


def test_two_drafted_tokens_emit_the_target_joint_distribution():
    """k = 2 over a 3-token vocabulary with context-dependent toy p, q: the first two emitted tokens ~ p exactly."""
    V = 3
    g = torch.Generator().manual_seed(0)
    p_table = torch.softmax(torch.randn(V + 1, V, generator=g, dtype=torch.float64), -1)  # row: previous token (V = none)
    q_table = torch.softmax(torch.randn(V + 1, V, generator=g, dtype=torch.float64), -1)
    joint = torch.zeros(V, V, dtype=torch.float64)
    for d1 in range(V):
        for d2 in range(V):
            w = q_table[V, d1] * q_table[d1, d2]
            a1 = accept_probability(p_table[V], q_table[V], d1)
            # rejected at step 1: x1 ~ residual ends the round; the next round emits x2 ~ p(.|x1) (the one-step result)
            r1 = residual(p_table[V], q_table[V])
            joint += w * (1 - a1) * r1[:, None] * p_table[:V]
            # accepted d1, then d2 accepted or replaced by the residual of step 2
            a2 = accept_probability(p_table[d1], q_table[d1], d2)
            joint[d1, d2] += w * a1 * a2
            joint[d1] += w * a1 * (1 - a2) * residual(p_table[d1], q_table[d1])
    target = p_table[V][:, None] * p_table[:V]
    assert torch.allclose(joint, target, atol=1e-12)


def test_verify_token_draws_match_the_target_on_smollm2(smollm2):
    """Chi-square of 20000 verified draws (d ~ int8 draft) against the fp32 target's top-8 distribution."""
    model = smollm2.model
    draft = make_draft(model, "int8")
    ids = smollm2.tokenizer.encode("My favourite fruit is", add_special=False)
    config = GenerationConfig(do_sample=True, top_k=8, temperature=1.5)
    processors = build_processors(config)
    with torch.inference_mode():
        x = torch.tensor([ids])
        p = torch.softmax(process(model(x, last_only=True)[:, -1], x, processors), -1)[0].double()
        q = torch.softmax(process(draft(x, last_only=True)[:, -1].float(), x, processors), -1)[0].double()
    assert not torch.allclose(p, q, atol=1e-3)  # the draft really differs
    g = make_generator(2024)
    drafted = torch.multinomial(q, 20000, replacement=True, generator=g).tolist()
    counts = torch.bincount(torch.tensor([verify_token(p, q, d, g)[1] for d in drafted]), minlength=len(p)).double()
    kept = p > 0
    assert counts[~kept].sum() == 0 and int(kept.sum()) == 8
    e = p[kept] * 20000
    assert float(((counts[kept] - e) ** 2 / e).sum()) < 24.32  # 0.1% critical value, 7 degrees of freedom


@pytest.fixture(scope="module")
def prompts(smollm2) -> list[list[int]]:
    return [smollm2.tokenizer.encode(t, add_special=False)
            for t in ("The three primary colors are", "def is_prime(n):\n", "Once upon a time, in a small village,")]


@pytest.mark.parametrize("draft_kind", ["int8", "int4"])
def test_speculative_greedy_equals_plain_greedy_on_smollm2(smollm2, prompts, draft_kind):
    model = smollm2.model
    draft = make_draft(model, draft_kind)
    config = GenerationConfig(max_new_tokens=32, num_assistant_tokens=4)
    stats = Acceptance()
    for ids in prompts:
        plain = list(decode_tokens(model, ids, config))
        assert list(speculative_tokens(model, draft, ids, config, stats)) == plain
    assert 0 < stats.rate <= 1
    print(f"draft {draft_kind}: acceptance {stats.rate:.2f} over {stats.drafted} drafted tokens")


def test_speculative_sampling_is_seeded_and_valid(smollm2, prompts):
    model = smollm2.model
    draft = truncated(model, 8)
    config = GenerationConfig(max_new_tokens=12, do_sample=True, top_k=20, seed=5, num_assistant_tokens=3)
    first = list(speculative_tokens(model, draft, prompts[0], config))
    assert first == list(speculative_tokens(model, draft, prompts[0], config)) and len(first) == 12


def test_truncated_draft_shares_the_weights(smollm2):
    draft = truncated(smollm2.model, 6)
    assert len(draft.blocks) == 6 and len(smollm2.model.blocks) == smollm2.spec.n_layers
    assert draft.blocks[0] is smollm2.model.blocks[0] and draft.embed is smollm2.model.embed
    with pytest.raises(LlmkitError, match="layers:N"):
        make_draft(smollm2.model, "layers:x")
    with pytest.raises(LlmkitError, match="1 <= N"):
        make_draft(smollm2.model, f"layers:{smollm2.spec.n_layers}")
