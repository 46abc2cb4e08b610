"""Added and special tokens: strings matched whole in the text before any other step.

``<|im_start|>`` in a prompt must become one id, not the BPE of ``<``, ``|``, ``im``...
HF tokenizers' AddedVocabulary and llama.cpp both cut the text at every occurrence of an
added token first (leftmost match, the longest one where several start at the same place)
and tokenize the text between them normally.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex


@dataclass(frozen=True)
class AddedToken:
    """A token matched whole in the text (HF ``AddedToken``; GGUF token types 3 control, 4 user-defined)."""

    content: str
    id: int
    special: bool = True  # left out by decode(skip_special=True)
    lstrip: bool = False  # the match takes the whitespace on its left
    rstrip: bool = False  # the match takes the whitespace on its right


Segment = tuple[int, int, int | None]  # (start, end, id of the added token or None for plain text)


class AddedVocabulary:
    """The added tokens of a tokenizer and the one regex that finds them, longest first."""

    def __init__(self, tokens: list[AddedToken]):
        self.tokens = tokens
        self.by_content = {t.content: t for t in tokens}
        ordered = sorted(tokens, key=lambda t: -len(t.content))
        alternatives = [_alternative(t) for t in ordered]
        self.pattern = regex.compile("|".join(alternatives)) if tokens else None
        self._id_of_group = [t.id for t in ordered]

    def split(self, text: str) -> list[Segment]:
        """``text`` cut into plain-text segments and added-token matches, in order."""
        if self.pattern is None:
            return [(0, len(text), None)] if text else []
        segments: list[Segment] = []
        cursor = 0
        for m in self.pattern.finditer(text):
            if m.start() > cursor:
                segments.append((cursor, m.start(), None))
            segments.append((m.start(), m.end(), self._id_of_group[m.lastindex - 1]))
            cursor = m.end()
        if cursor < len(text):
            segments.append((cursor, len(text), None))
        return segments


def _alternative(token: AddedToken) -> str:
    """The regex alternative that matches one added token (one capture group per token)."""
    left = r"\s*" if token.lstrip else ""
    right = r"\s*" if token.rstrip else ""
    return f"({left}{regex.escape(token.content)}{right})"
