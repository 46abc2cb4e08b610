"""GPT-2's byte <-> unicode table: every byte spelled as one printable character.

Byte-level BPE works on bytes, but its vocabulary and merges are stored as text. GPT-2
(Radford et al. 2019, ``encoder.py``) maps the 188 printable Latin-1 bytes to themselves
and the other 68 (control bytes, space, 0x7F-0xA0, 0xAD) to U+0100.. in byte order, so a
space is spelled ``Ġ`` (U+0120) and a newline ``Ċ`` (U+010A)::

    byte   0x21..0x7E  0xA1..0xAC  0xAE..0xFF  | 0x00..0x20  0x7F..0xA0  0xAD
    char   same        same        same        | U+0100 ...  (next free, in byte order)
"""

from __future__ import annotations

from functools import cache


@cache
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable character, GPT-2's table (openai/gpt-2 ``encoder.py``)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    spare = 0x100
    for b in range(256):
        if b not in table:
            table[b] = chr(spare)
            spare += 1
    return table


@cache
def unicode_to_bytes() -> dict[str, int]:
    """Printable character -> byte, the inverse of :func:`bytes_to_unicode`."""
    return {c: b for b, c in bytes_to_unicode().items()}


@cache
def _latin1_to_spelling() -> dict[int, str]:
    """``str.translate`` table from a latin-1-decoded byte string to GPT-2's spelling."""
    return {b: c for b, c in bytes_to_unicode().items()}


def spell_bytes(data: bytes) -> str:
    """Bytes in GPT-2's byte-level spelling: ``b" hi"`` -> ``"Ġhi"``."""
    return data.decode("latin-1").translate(_latin1_to_spelling())


def token_bytes(token: str) -> bytes:
    """The bytes a vocabulary entry stands for.

    A token spelled in the byte alphabet maps back byte by byte; one that is not (an added
    token such as ``<｜begin▁of▁sentence｜>``) is its own UTF-8, as HF tokenizers' ByteLevel
    decoder does.
    """
    table = unicode_to_bytes()
    try:
        return bytes(table[c] for c in token)
    except KeyError:
        return token.encode("utf-8")
