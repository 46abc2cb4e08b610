"""Normalizers: text rewritten before it is cut into pieces (HF tokenizers' ``normalizers``).

:class:`BertNormalizer` is BERT's (Devlin et al. 2019, ``tokenization.py`` BasicTokenizer), in
HF tokenizers' order: clean-up, Chinese-character splitting, accent stripping, lowercasing.
``__call__`` is the fast path on whole strings; :meth:`BertNormalizer.aligned` rewrites one
character at a time and keeps, for every output character, the index of the input character it
came from, which is what offsets need. A test holds the two equal.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, replace
from typing import Literal

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
_MARK = regex.compile(r"\p{M}")  # Mn, Mc, Me: HF StripAccents' is_combining_mark


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


PrependScheme = Literal["always", "first", "never"]


@dataclass(frozen=True)
class Metaspace:
    """SentencePiece's space marker (HF ``Metaspace``): spaces become ``▁`` and one ``▁`` may lead.

    ``prepend_scheme``: ``always`` puts a ``▁`` in front of every text segment (between added
    tokens), ``first`` only in front of the segment that starts the input (modern LLaMA / Mistral
    ``tokenizer.json``), ``never`` not at all; nothing is put in front of text that starts with
    ``▁``. HF runs it as a pre-tokenizer; here it is the rewrite, and with ``split`` the
    ``metaspace`` pre-tokenizer then cuts before every ``▁`` (without it the segment is one piece).
    The prepended ``▁`` is aligned with the first character.
    """

    replacement: str = "\u2581"
    prepend_scheme: PrependScheme = "always"
    split: bool = True

    def __post_init__(self):
        if self.prepend_scheme not in ("always", "first", "never"):
            raise TokenizerError(f"Metaspace prepend_scheme {self.prepend_scheme!r}: use always, first or never")

    @property
    def prepends(self) -> bool:
        """Whether a ``▁`` is put in front of the input (the decoder then drops it)."""
        return self.prepend_scheme != "never"

    def after_start(self) -> Metaspace:
        """The rewrite for a segment that does not start the input (``first`` prepends nothing there)."""
        return replace(self, prepend_scheme="never") if self.prepend_scheme == "first" else self

    def __call__(self, text: str) -> str:
        """The rewritten text."""
        text = text.replace(" ", self.replacement)
        return self.replacement + text if self.prepends and text and not text.startswith(self.replacement) else text

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The rewritten text and, per output character, the index of its input character."""
        out = self(text)
        return out, ([0] if len(out) > len(text) else []) + list(range(len(text)))


UnicodeForm = Literal["NFC", "NFD", "NFKC", "NFKD"]
_STARTER = regex.compile(r"\P{M}\p{M}*|\p{M}+")  # a character and the combining marks after it


@dataclass(frozen=True)
class UnicodeNormalizer:
    """Unicode normal form ``form`` (HF ``NFC`` / ``NFD`` / ``NFKC`` / ``NFKD``; UAX #15)."""

    form: UnicodeForm = "NFKC"

    def __post_init__(self):
        if self.form not in ("NFC", "NFD", "NFKC", "NFKD"):
            raise TokenizerError(f"Unicode normal form {self.form!r}: use NFC, NFD, NFKC or NFKD")

    def __call__(self, text: str) -> str:
        """The text in normal form ``form``."""
        return unicodedata.normalize(self.form, text)

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """Normalized one base character + its marks at a time; each output character maps to the base."""
        out: list[str] = []
        source: list[int] = []
        for m in _STARTER.finditer(text):
            piece = unicodedata.normalize(self.form, m.group())
            out.append(piece)
            source += [m.start()] * len(piece)
        return "".join(out), source


@dataclass(frozen=True)
class Lowercase:
    """Lowercase each character (HF ``Lowercase``: Rust ``to_lowercase``, no final-sigma rule)."""

    def __call__(self, text: str) -> str:
        """The lowercased text."""
        return _lower(text)

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """Lowercased one character at a time (İ becomes two characters, both mapped to it)."""
        out = [_lower(c) for c in text]
        return "".join(out), [i for i, piece in enumerate(out) for _ in piece]


@dataclass(frozen=True)
class StripAccents:
    """Remove combining marks (HF ``StripAccents``: drops \\p{M}; run NFD first to split accents off)."""

    def __call__(self, text: str) -> str:
        """The text without combining marks."""
        return _MARK.sub("", text)

    def aligned(self, text: str) -> tuple[str, list[int]]:
        """The kept characters and their input indices."""
        keep = [i for i, c in enumerate(text) if not _MARK.match(c)]
        return "".join(text[i] for i in keep), keep


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

    def after_start(self) -> NormalizerSequence:
        """The steps for a segment that does not start the input (see :meth:`Metaspace.after_start`)."""
        return NormalizerSequence(tuple(s.after_start() if hasattr(s, "after_start") else s for s in self.steps))

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
