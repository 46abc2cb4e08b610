"""Decoders that turn SentencePiece-style tokens back into text (HF tokenizers' ``decoders``).

``▁`` stands for a space; ``<0xXX>`` tokens are raw bytes (byte fallback) and a run of them is
decoded as UTF-8, each byte of an invalid run becoming U+FFFD (HF ``ByteFallback``).
"""

from __future__ import annotations

import regex

SPACE_MARK = "\u2581"
_BYTE_TOKEN = regex.compile(r"<0x([0-9A-Fa-f]{2})>")


def metaspace_decode(tokens: list[str], prepend: bool) -> str:
    """Tokens joined, ``▁`` back to spaces; the space a prepend put in front is dropped (HF ``Metaspace``)."""
    text = "".join(tokens).replace(SPACE_MARK, " ")
    return text[1:] if prepend and tokens and tokens[0].startswith(SPACE_MARK) else text


def sentencepiece_decode(tokens: list[str], strip_leading_space: bool) -> str:
    """HF ``Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)]``: LLaMA-2's decoder."""
    pieces: list[str] = []
    run = bytearray()
    for token in tokens:
        m = _BYTE_TOKEN.fullmatch(token)
        if m:
            run.append(int(m.group(1), 16))
            continue
        pieces.append(_bytes_text(run))
        run.clear()
        pieces.append(token.replace(SPACE_MARK, " "))
    text = "".join(pieces) + _bytes_text(run)
    return text[1:] if strip_leading_space and text.startswith(" ") else text


def _bytes_text(run: bytearray) -> str:
    """A run of byte tokens as text: its UTF-8, or one U+FFFD per byte when it is not valid UTF-8."""
    try:
        return run.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(run)
