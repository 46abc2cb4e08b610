"""Transformer(spec) against transformers on tiny random llama-family models (the oracle)."""

from __future__ import annotations

import torch

from llmkit.calc.params import count_params
from llmkit.generate.cache import ContiguousKVCache


def _ids_and_mask(vocab: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    if left:
        mask[1, :4], mask[2, :1] = 0, 0
    else:
        mask[1, 7:], mask[2, 10:] = 0, 0
    return ids, mask


def test_logits_equal_transformers_with_right_padding(tiny_pair):
    hf, ours = tiny_pair
    ids, mask = _ids_and_mask(hf.config.vocab_size, left=False)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert got.shape == expected.shape
    assert torch.allclose(got[real], expected[real], atol=1e-5, rtol=0)


def test_logits_equal_transformers_with_left_padding(tiny_pair):
    hf, ours = tiny_pair
    ids, mask = _ids_and_mask(hf.config.vocab_size, left=True)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # what transformers' generate passes
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5, rtol=0)


def test_cached_logits_equal_uncached(tiny_pair):
    _, ours = tiny_pair
    ids, mask = _ids_and_mask(ours.spec.vocab_size, left=True)
    cache = ContiguousKVCache(ours.spec, batch=3, max_len=16)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask)
        parts = [ours(ids[:, :6], attention_mask=mask[:, :6], cache=cache)]
        for t in range(6, 11):  # then one token at a time
            parts.append(ours(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache))
    stepwise = torch.cat(parts, dim=1)
    real = mask.bool()
    assert cache.length == 11
    # float32 rounding only: the cached steps run the C kernels (other summation orders), the full pass MKL
    assert (stepwise[real] - full[real]).abs().max() <= 1e-5 * full[real].abs().max()


def test_unpadded_cached_decode_equals_uncached(tiny_pair):
    _, ours = tiny_pair
    ids = torch.randint(0, ours.spec.vocab_size, (1, 9), generator=torch.Generator().manual_seed(2))
    cache = ContiguousKVCache(ours.spec, batch=1, max_len=9)
    with torch.no_grad():
        full = ours(ids)
        prefill = ours(ids[:, :5], cache=cache)
        steps = [ours(ids[:, t : t + 1], cache=cache) for t in range(5, 9)]
    assert torch.allclose(torch.cat([prefill, *steps], dim=1), full, atol=1e-5, rtol=0)


def test_last_only_is_the_last_position(tiny_pair):
    _, ours = tiny_pair
    ids = torch.randint(0, ours.spec.vocab_size, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(ours(ids, last_only=True), ours(ids)[:, -1:], atol=1e-6, rtol=0)


def test_parameter_count_equals_transformers_and_planner(tiny_pair):
    hf, ours = tiny_pair
    n = sum(p.numel() for p in ours.parameters())
    assert n == sum(p.numel() for p in hf.parameters())
    assert n == count_params(ours.spec).total


def test_reference_attention_backend_gives_the_same_logits(tiny_pair):
    _, ours = tiny_pair
    ids, mask = _ids_and_mask(ours.spec.vocab_size, left=True)
    with torch.no_grad():
        fast = ours(ids, attention_mask=mask)
        for block in ours.blocks:
            block.attn.backend = "reference"
        try:
            readable = ours(ids, attention_mask=mask)
        finally:
            for block in ours.blocks:
                block.attn.backend = "sdpa"
    real = mask.bool()
    assert torch.allclose(readable[real], fast[real], atol=1e-5, rtol=0)
