"""Sentence embeddings from an encoder (sheet sections 6 and 14): mean pooling + L2 normalisation.

    e(text) = u / ||u||,   u = sum_i m_i h_i / sum_i m_i        (Reimers & Gurevych 2019, SBERT)

h_i are the encoder's last hidden states, m_i the attention mask (1 on real tokens), so
padding never enters the mean. This is what sentence-transformers' all-MiniLM-L6-v2 does
(modules.json: Transformer -> Pooling(mean) -> Normalize).

    model, tok = load("all-minilm-l6-v2").model, load("all-minilm-l6-v2").tokenizer
    vectors = sentence_embeddings(model, tok, ["A cat sat.", "A dog ran."])   # [2, 384]
    vectors @ vectors.T                                                          # cosine similarities
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llmkit.errors import LlmkitError


@dataclass(frozen=True)
class EmbedConfig:
    """How texts become vectors: batch size, the token cap per text, whether to L2-normalise."""

    batch_size: int = 32
    max_tokens: int | None = None  # None: the model's max_positions
    normalize: bool = True


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_i m_i h_i / sum_i m_i: [batch, seq, d] and mask [batch, seq] -> [batch, d] (SBERT mean pooling)."""
    m = mask.to(hidden.dtype)[..., None]  # [batch, seq, 1]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [batch, longest], mask [batch, longest]): rows padded on the right with pad_id, mask 0 there."""
    longest = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (longest - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in rows])
    return ids, mask


@torch.inference_mode()
def sentence_embeddings(
    model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], config: EmbedConfig = EmbedConfig()
) -> torch.Tensor:
    """[len(texts), d_model] mean-pooled (and L2-normalised) encoder states, one row per text."""
    if model.spec.family != "encoder":
        raise LlmkitError(f"sentence embeddings need an encoder model; {model.spec.name!r} is a {model.spec.family}")
    if not texts:
        raise LlmkitError("no texts to embed")
    cap = config.max_tokens or model.spec.max_positions
    pad_id = tokenizer.token_to_id("[PAD]") or 0
    out = []
    for start in range(0, len(texts), config.batch_size):
        rows = [tokenizer.encode(t)[:cap] for t in texts[start : start + config.batch_size]]
        ids, mask = pad_batch(rows, pad_id)  # [batch, longest]
        pooled = mean_pool(model(ids, attention_mask=mask), mask)  # [batch, d_model]
        out.append(F.normalize(pooled, dim=-1) if config.normalize else pooled)
    return torch.cat(out)
