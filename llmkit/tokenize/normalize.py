"""Normalizers: text rewritten before it is cut into pieces (HF tokenizers' ``normalizers``).

:class:`BertNormalizer` is BERT's (Devlin et al. 2019, ``tokenization.py`` BasicTokenizer), in
HF tokenizers' order: clean-up, Chinese-character splitting, accent stripping, lowercasing.
``__call__`` is the fast path on whole strings; :meth:`BertNormalizer.aligned` rewrites one
character at a time and keeps, for every output character, the index of the input character it
came from, which is what offsets need. A test holds the two equal.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex

from llmkit.tokenize.errors import TokenizerError

# Removed by clean-up: NUL, U+FFFD and control / format / private-use characters except \t \n \r.
_CLEAN_REMOVE = regex.compile(r"[\x00\ufffd]|[\p{Cc}\p{Cf}\p{Co}--[\t\n\r]]", regex.V1)
_WHITESPACE = regex.compile(r"\s")  # White_Space (with \t \n \r) becomes a plain space
# CJK Unified Ideographs blocks BERT pads with spaces (tokenization.py _is_chinese_char).
_CJK = (
    "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f"
)
_CHINESE = regex.compile(f"([{_CJK}])")
_NONSPACING_MARK = regex.compile(r"\p{Mn}")


@dataclass(frozen=True)
class BertNormalizer:
    """BERT's normalizer (HF ``BertNormalizer``); ``strip_accents=None`` follows ``lowercase``."""

    clean_text: bool = True
    handle_chinese_chars: bool = True
    strip_accents: bool | None = None
    lowercase: bool = True

    @property
    def _strip(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents

    def __call__(self, text: str) -> str:
        """The normalized text."""
        if self.clean_text:
            text = _WHITESPACE.sub(" ", _CLEAN_REMOVE.sub("", text))
        if self.handle_chinese_chars:
            text = _CHINESE.sub(r" \1 ", text)
        if self._strip:
            text = _NONSPACING_MARK.sub("", unicodedata.normalize("NFD", text))
        if self.lowercase:
            text = _lower(text)
        return text

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The normalized text and, per output character, the index of its input character."""
        out: list[str] = []
        source: list[int] = []
        for i, c in enumerate(text):
            piece = (c.lower() if self.lowercase else c) if " " < c < "\x7f" else self(c)
            out.append(piece)
            source += [i] * len(piece)
        return "".join(out), source


@dataclass(frozen=True)
class Metaspace:
    """SentencePiece's space marker (HF ``Metaspace``): spaces become ``▁`` and, with prepend, one leads.

    HF runs it as a pre-tokenizer; here it is the rewrite, and the ``metaspace`` pre-tokenizer
    regex then cuts before every ``▁``. The prepended ``▁`` is aligned with the first character.
    """

    replacement: str = "\u2581"
    prepend: bool = True  # HF prepend_scheme "always"

    @property
    def prepends(self) -> bool:
        """Whether a ``▁`` is put in front (the decoder then drops it)."""
        return self.prepend

    def __call__(self, text: str) -> str:
        """The rewritten text."""
        text = text.replace(" ", self.replacement)
        return self.replacement + text if self.prepend and text and not text.startswith(self.replacement) else text

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The rewritten text and, per output character, the index of its input character."""
        out = self(text)
        return out, ([0] if len(out) > len(text) else []) + list(range(len(text)))


@dataclass(frozen=True)
class Prepend:
    """Put ``text`` in front of a non-empty string (HF ``Prepend``; LLaMA-2 prepends ``▁``)."""

    text: str = "\u2581"

    @property
    def prepends(self) -> bool:
        """Whether this puts a ``▁`` in front (the decoder then strips the leading space)."""
        return self.text == "\u2581"

    def __call__(self, text: str) -> str:
        """The text with the prefix."""
        return self.text + text if text else text

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The prefixed text; the prefix is aligned with the first character."""
        return self(text), ([0] * len(self.text) if text else []) + list(range(len(text)))


@dataclass(frozen=True)
class Replace:
    """Replace every ``old`` character with ``new`` (HF ``Replace`` with a one-character string pattern)."""

    old: str = " "
    new: str = "\u2581"

    def __post_init__(self):
        if len(self.old) != 1 or len(self.new) != 1:
            raise TokenizerError(f"Replace({self.old!r}, {self.new!r}): llmkit replaces one character with one character")

    def __call__(self, text: str) -> str:
        """The text with every ``old`` replaced."""
        return text.replace(self.old, self.new)

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The replaced text, one output character per input character."""
        return self(text), list(range(len(text)))


@dataclass(frozen=True)
class NormalizerSequence:
    """Normalizers applied in order (HF ``normalizers.Sequence``)."""

    steps: tuple

    @property
    def prepends(self) -> bool:
        """Whether a step puts a ``▁`` in front."""
        return any(getattr(step, "prepends", False) for step in self.steps)

    def __call__(self, text: str) -> str:
        """The text after every step."""
        for step in self.steps:
            text = step(text)
        return text

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The text after every step, each output character mapped back to the input."""
        source = list(range(len(text)))
        for step in self.steps:
            text, inner = step.aligned(text)
            source = [source[i] for i in inner]
        return text, source


def _lower(text: str) -> str:
    """Lowercase one character at a time, as Rust's ``char::to_lowercase`` does (no final-sigma rule)."""
    return text.replace("\u03a3", "\u03c3").lower()
