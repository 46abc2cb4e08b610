"""The readable attention and the SDPA fast path agree; masks hide what they should."""

from __future__ import annotations

import pytest
import torch

from llmkit.nn.attention import Mask, attention_reference, attention_sdpa, build_mask, causal_bias


def _qkv(n_heads: int, n_kv: int, q_len: int, kv_len: int, batch: int = 2):
    g = torch.Generator().manual_seed(n_heads * 100 + n_kv * 10 + q_len)
    q = torch.randn(batch, n_heads, q_len, 16, generator=g)
    k = torch.randn(batch, n_kv, kv_len, 16, generator=g)
    v = torch.randn(batch, n_kv, kv_len, 16, generator=g)
    return q, k, v


@pytest.mark.parametrize("n_heads,n_kv", [(4, 4), (6, 2), (6, 1)])  # MHA, GQA, MQA
@pytest.mark.parametrize("q_len,past", [(7, 0), (1, 9), (3, 5)])  # prefill, decode, chunk after a cache
@pytest.mark.parametrize("padded", [False, True])
def test_sdpa_equals_reference(n_heads, n_kv, q_len, past, padded):
    q, k, v = _qkv(n_heads, n_kv, q_len, past + q_len)
    padding = None
    if padded:
        padding = torch.ones(2, past + q_len, dtype=torch.long)
        padding[1, :2] = 0  # left padding on the second row
    mask = build_mask(padding, q_len, past, torch.float32)
    expected = attention_reference(q, k, v, mask)
    assert torch.allclose(attention_sdpa(q, k, v, mask), expected, atol=1e-5, rtol=0)


def test_reference_is_the_formula_on_one_head():
    q, k, v = _qkv(1, 1, 3, 3, batch=1)
    scores = q[0, 0] @ k[0, 0].T / 4.0  # sqrt(d_k) = 4
    scores = scores + torch.triu(torch.full((3, 3), float("-inf")), diagonal=1)
    expected = torch.softmax(scores, dim=-1) @ v[0, 0]
    got = attention_reference(q, k, v, Mask(is_causal=True))[0, 0]
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_causal_bias_with_cache_and_window():
    visible = causal_bias(3, 5, torch.float32) == 0
    assert visible.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    windowed = causal_bias(3, 5, torch.float32, window=2) == 0
    assert windowed.tolist() == [
        [False, True, True, False, False],
        [False, False, True, True, False],
        [False, False, False, True, True],
    ]


def test_padding_keys_get_no_weight():
    q, k, v = _qkv(2, 2, 4, 4, batch=1)
    padding = torch.tensor([[0, 0, 1, 1]])
    out = attention_sdpa(q, k, v, build_mask(padding, 4, 0, torch.float32))
    # the last query sees keys 2 and 3 only: changing the padded keys' values changes nothing
    v2 = v.clone()
    v2[:, :, :2] = 100.0
    out2 = attention_sdpa(q, k, v2, build_mask(padding, 4, 0, torch.float32))
    assert torch.allclose(out[:, :, 2:], out2[:, :, 2:], atol=1e-6, rtol=0)
