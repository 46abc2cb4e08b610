"""Real text found on this machine, by script family, for exactness tests against HF tokenizers.

Nothing here is generated: English prose and whitespace-rich help text are the msgids of the
system's gettext catalogs (/usr/share/locale/*/LC_MESSAGES/*.mo), other scripts are their
translations (msgstr), code is the Python standard library, and emoji come from the emoji
table that ships with ``rich``. Catalogs and files are read in sorted order, so the corpus is
the same on every run of the same machine.
"""

from __future__ import annotations

import ast
import gettext
import importlib.util
import sysconfig
from functools import cache
from pathlib import Path

LOCALE = Path("/usr/share/locale")

SCRIPT_LANGUAGES = {
    "accented-latin": ["fr", "de", "es", "pt", "pl", "cs", "vi", "tr", "hu", "ro"],
    "cjk": ["ja", "zh_CN", "zh_TW", "ko"],
    "cyrillic": ["ru", "uk", "bg", "sr"],
    "arabic": ["ar", "fa", "ur", "ug", "ckb", "ps", "sd", "az_IR", "pa_PK"],
}


def _catalogs(language: str) -> list[dict]:
    out = []
    for path in sorted((LOCALE / language / "LC_MESSAGES").glob("*.mo")):
        try:
            with path.open("rb") as f:
                out.append(gettext.GNUTranslations(f)._catalog)
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # a catalog in a legacy encoding: not our concern
    return out


def _take(texts, limit: int) -> str:
    """Texts joined by newlines until ``limit`` UTF-8 bytes."""
    out, size = [], 0
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            continue
        out.append(t)
        size += len(t.encode("utf-8")) + 1
        if size >= limit:
            break
    return "\n".join(out)


def translations(family: str, limit: int) -> str:
    """Real translated strings in one script family (gettext msgstr)."""
    texts = (v for lang in SCRIPT_LANGUAGES[family] for cat in _catalogs(lang) for v in cat.values())
    return _take(texts, limit)


def english(limit: int) -> str:
    """Real English prose and help text (gettext msgid), with its whitespace runs and tabs."""
    texts = (k if isinstance(k, str) else k[0] for cat in _catalogs("fr") + _catalogs("de") for k in cat)
    return _take(texts, limit)


def python_code(limit: int) -> str:
    """Python standard library sources."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = (p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py")))
    return _take(texts, limit)


def emoji(limit: int) -> str:
    """Emoji with their names, from rich's emoji table (ZWJ sequences, skin tones, flags)."""
    origin = importlib.util.find_spec("rich._emoji_codes").origin
    module = ast.parse(Path(origin).read_text(encoding="utf-8"))
    table = next(node.value for node in module.body if isinstance(node, ast.Assign) and node.targets[0].id == "EMOJI")
    lines = (f"{name}: {char}" for name, char in ast.literal_eval(table).items())
    return _take(lines, limit)


@cache
def corpus(limit_per_family: int = 1 << 20) -> dict[str, str]:
    """Family name -> real text of about ``limit_per_family`` bytes (emoji: all there is)."""
    texts = {"english": english(limit_per_family), "code": python_code(limit_per_family)}
    texts |= {family: translations(family, limit_per_family) for family in SCRIPT_LANGUAGES}
    texts["emoji"] = emoji(limit_per_family)
    return texts
