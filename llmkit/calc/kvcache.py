"""KV-cache size (sheet section 12).

    bytes = 2 (K and V) * n_layers * n_kv_heads * d_head * bytes_per_element * tokens * batch

MHA / GQA / MQA differ only by ``n_kv_heads``. Variants, each stated in the result:

* sliding-window layers hold at most W tokens (``window="auto"`` uses the model's own
  window; ``window_keeps="transformers"`` holds W - 1 between steps, as transformers 5's
  ``DynamicSlidingWindowLayer`` does: the next token attends to itself plus W - 1 past ones);
* quantized KV: int8 / fp8 one byte per element; GGML q8_0 (34 B per 32) and q4_0
  (18 B per 32) in whole blocks along each head's d_head;
* paged caches (vLLM) round each sequence up to whole blocks of ``block_size`` tokens;
* encoder-decoders: decoder self-attention over the decoder tokens plus the
  cross-attention K/V of the encoder output in every decoder layer.

Pure Python: no torch import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from llmkit.calc.formats import GGML_TYPES, unknown
from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec

KVDtype = Literal["fp32", "fp16", "bf16", "fp8", "int8", "q8_0", "q4_0"]
KV_DTYPES: tuple[str, ...] = KVDtype.__args__  # type: ignore[attr-defined]
WindowKeeps = Literal["window", "transformers"]

_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}


@dataclass(frozen=True)
class KVCache:
    """A KV-cache size with its parts; all byte counts are exact integers."""

    bytes: int
    self_attention_bytes: int
    cross_attention_bytes: int
    bytes_per_token: int  # one token, all layers, K and V, batch 1 (decoder self-attention)
    tokens_cached: int  # tokens per sequence held by each (sliding) self-attention layer
    dtype: str
    convention: str


def head_row_bytes(d_head: int, dtype: str) -> int:
    """Bytes of one head's K (or V) vector: d_head * element bytes, or whole GGML blocks for q8_0 / q4_0."""
    if dtype in _ELEMENT_BYTES:
        return d_head * _ELEMENT_BYTES[dtype]
    if dtype in ("q8_0", "q4_0"):
        t = GGML_TYPES[dtype.upper()]
        return math.ceil(d_head / t.block_size) * t.type_size
    raise unknown("KV dtype", dtype, KV_DTYPES)


def kv_bytes_per_token(spec: ModelSpec, dtype: str = "fp16", layers: int | None = None) -> int:
    """2 * layers * n_kv_heads * head_row_bytes: K and V of one token in every layer (sheet sec. 12)."""
    n = spec.n_layers if layers is None else layers
    return 2 * n * spec.kv_heads * head_row_bytes(spec.d_head, dtype)


def cached_tokens(spec: ModelSpec, seq_len: int, window: int | str | None = "auto",
                  window_keeps: WindowKeeps = "window", block_size: int | None = None) -> int:
    """Tokens one sequence holds in a layer: min(seq_len, W) (W - 1 for transformers), rounded up to paged blocks."""
    w = _window(spec, window)
    tokens = seq_len
    if w is not None:
        tokens = min(seq_len, w - 1 if window_keeps == "transformers" else w)
    if block_size is not None:
        tokens = math.ceil(tokens / block_size) * block_size
    return tokens


def kv_cache(spec: ModelSpec, seq_len: int, batch: int = 1, dtype: str = "fp16", window: int | str | None = "auto",
             block_size: int | None = None, encoder_len: int | None = None,
             window_keeps: WindowKeeps = "window") -> KVCache:
    """KV cache = 2 * L * n_kv * d_head * bytes * tokens * batch (sheet sec. 12), plus cross-attention K/V."""
    _check(seq_len, batch, dtype, block_size, encoder_len, window_keeps)
    tokens = cached_tokens(spec, seq_len, window, window_keeps, block_size)
    per_token = kv_bytes_per_token(spec, dtype)
    self_bytes = per_token * tokens * batch
    cross = 0
    if spec.family == "encoder-decoder":
        enc = seq_len if encoder_len is None else encoder_len
        if block_size is not None:
            enc = math.ceil(enc / block_size) * block_size
        cross = per_token * enc * batch
    return KVCache(
        bytes=self_bytes + cross, self_attention_bytes=self_bytes, cross_attention_bytes=cross,
        bytes_per_token=per_token, tokens_cached=tokens, dtype=dtype,
        convention=_convention(spec, window, window_keeps, block_size, dtype),
    )


def kv_cache_bytes(spec: ModelSpec, seq_len: int, batch: int = 1, dtype: str = "fp16",
                   window: int | str | None = "auto", block_size: int | None = None,
                   encoder_len: int | None = None, window_keeps: WindowKeeps = "window") -> int:
    """Total KV-cache bytes: 2 * L * n_kv * d_head * bytes * tokens * batch (sheet sec. 12)."""
    return kv_cache(spec, seq_len, batch, dtype, window, block_size, encoder_len, window_keeps).bytes


def max_tokens_for_budget(spec: ModelSpec, budget_bytes: int, batch: int = 1, dtype: str = "fp16") -> int:
    """Largest seq_len whose full-attention KV cache fits ``budget_bytes``: floor(budget / (per_token * batch))."""
    _check(1, batch, dtype, None, None, "window")
    per_seq_token = kv_bytes_per_token(spec, dtype) * batch
    if spec.family == "encoder-decoder":
        per_seq_token *= 2  # decoder tokens and as many encoder tokens
    return max(budget_bytes, 0) // per_seq_token


def _window(spec: ModelSpec, window: int | str | None) -> int | None:
    if window == "auto":
        return spec.sliding_window
    if window is None or window == "none":
        return None
    if isinstance(window, bool) or not isinstance(window, int) or window <= 1:
        raise LlmkitError(f"window must be 'auto', 'none' or an integer > 1; got {window!r}")
    return window


def _check(seq_len: int, batch: int, dtype: str, block_size: int | None, encoder_len: int | None,
           window_keeps: str) -> None:
    for name, value in (("seq_len", seq_len), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LlmkitError(f"{name} must be a positive integer; got {value!r}")
    if dtype not in KV_DTYPES:
        raise unknown("KV dtype", dtype, KV_DTYPES)
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise LlmkitError(f"block_size must be a positive integer (vLLM's default is 16); got {block_size!r}")
    if encoder_len is not None and (not isinstance(encoder_len, int) or encoder_len < 1):
        raise LlmkitError(f"encoder_len must be a positive integer; got {encoder_len!r}")
    if window_keeps not in ("window", "transformers"):
        raise unknown("window_keeps", window_keeps, ["window", "transformers"])


def _convention(spec: ModelSpec, window: int | str | None, keeps: str, block_size: int | None, dtype: str) -> str:
    parts = [f"2 * {spec.n_layers} layers * {spec.kv_heads} KV heads ({spec.attention_kind}) * d_head {spec.d_head}"]
    w = _window(spec, window)
    if w is not None:
        parts.append(f"sliding window {w}: keeps {'W - 1 (transformers)' if keeps == 'transformers' else 'W'} tokens")
    if dtype in ("q8_0", "q4_0"):
        parts.append(f"{dtype}: whole 32-element blocks along d_head")
    if block_size is not None:
        parts.append(f"paged: tokens rounded up to blocks of {block_size}")
    if spec.family == "encoder-decoder":
        parts.append("plus cross-attention K/V over the encoder length in each decoder layer")
    return "; ".join(parts)
