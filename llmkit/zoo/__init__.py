"""The zoo: the models the sheet names, with their exact published configs (sheet sections 1, 2, 6).

Each model is a TOML file under ``zoo/models/``: the HF ``config.json`` values verbatim
(``[config]``; null-valued keys left out, TOML has no null), where they came from
(``source``, and ``[sources]`` per value when there is no config file, as for GPT-3),
aliases, notes, and the sheet's own rows (``[[sheet]]``, values as printed) so
``llmkit sheet`` can hold them against the computed figures. Closed models (GPT-4,
Gemini, Claude) have ``published = false`` and no config.

    get("Llama 2-7B")        -> ModelSpec          (case, spaces, '-', '_', '.' ignored)
    entry("mixtral")         -> ZooEntry           (config, sources, sheet claims, notes)
    sheet_rows(2)            -> [(ZooEntry, SheetRow)]  the sheet's table rows and the models behind them
    resolve_spec(source)     -> ModelSpec          (zoo name | config.json | directory | .gguf)

Pure Python: no torch.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping

from llmkit.errors import LlmkitError
from llmkit.spec import ModelSpec, from_gguf_metadata, from_hf_config
from llmkit.io.gguf_header import read_gguf_header


class ZooError(LlmkitError):
    """An unknown zoo name, or a model whose architecture is not published."""


@dataclass(frozen=True)
class SheetRow:
    """One row of one of the sheet's tables, its values as printed (e.g. params '7B', vocab '32K')."""

    section: int
    table: str
    row: str
    claims: Mapping[str, str]


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its published config and where every value came from."""

    name: str
    title: str
    aliases: tuple[str, ...]
    published: bool  # False: closed model, no architecture published
    source: str  # URL of the config.json, or the paper and table
    hf_repo: str = ""
    notes: str = ""
    omitted: tuple[str, ...] = ()  # config keys not transcribed
    config: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # per-value sources, where not one file
    sheet: tuple[SheetRow, ...] = ()

    def spec(self) -> ModelSpec:
        """The ModelSpec of this model; a closed model raises ZooError saying nothing is published."""
        if not self.published:
            raise ZooError(
                f"{self.title}: no architecture is published, so it cannot be sized; the zoo holds only "
                f"the sheet's claims (see `llmkit zoo show {self.name}`)"
            )
        spec = from_hf_config(self.config, name=self.name)
        return spec.with_(source=self.source)


def normalize(name: str) -> str:
    """Lookup key of a name: lower case, '×' as 'x', without spaces, '-', '_' and '.'."""
    key = name.strip().lower().replace("×", "x")
    return "".join(c for c in key if c not in " -_.\t")


def _row(data: Mapping[str, Any]) -> SheetRow:
    meta = ("section", "table", "row")
    claims = {k: str(v) for k, v in data.items() if k not in meta}
    return SheetRow(int(data["section"]), str(data["table"]), str(data["row"]), claims)


def _entry(data: Mapping[str, Any]) -> ZooEntry:
    return ZooEntry(
        name=data["name"], title=data["title"], aliases=tuple(data.get("aliases", ())),
        published=bool(data.get("published", True)), source=data["source"], hf_repo=data.get("hf_repo", ""),
        notes=data.get("notes", ""), omitted=tuple(data.get("omitted", ())), config=data.get("config", {}),
        sources=data.get("sources", {}), sheet=tuple(_row(r) for r in data.get("sheet", ())),
    )


@cache
def _entries() -> dict[str, ZooEntry]:
    """All zoo entries by canonical name, read once from the package's TOML files."""
    out = {}
    for path in sorted(files("llmkit.zoo").joinpath("models").iterdir(), key=lambda p: p.name):
        if path.name.endswith(".toml"):
            e = _entry(tomllib.loads(path.read_text(encoding="utf-8")))
            out[e.name] = e
    return out


@cache
def _index() -> dict[str, str]:
    """Normalized name or alias -> canonical name; two entries claiming one key is a data bug."""
    index: dict[str, str] = {}
    for e in _entries().values():
        for key in {normalize(n) for n in (e.name, *e.aliases)}:
            if index.setdefault(key, e.name) != e.name:
                raise LlmkitError(f"zoo data: alias {key!r} is claimed by both {index[key]!r} and {e.name!r}")
    return index


def names() -> list[str]:
    """Canonical names of every zoo model, sorted."""
    return sorted(_entries())


def sheet_rows(section: int | None = None) -> list[tuple[ZooEntry, SheetRow]]:
    """Every sheet row the zoo records (of one section, if given), with the entry that answers it."""
    return [(e, r) for e in _entries().values() for r in e.sheet if section in (None, r.section)]


def closest(name: str, n: int = 3) -> list[str]:
    """The zoo names closest to ``name`` (difflib over names and aliases)."""
    index = _index()
    keys = difflib.get_close_matches(normalize(name), list(index), n=3 * n, cutoff=0.5)
    return list(dict.fromkeys(index[k] for k in keys))[:n]


def entry(name: str) -> ZooEntry:
    """The zoo record for a name or alias; an unknown name raises ZooError listing the closest names."""
    canonical = _index().get(normalize(name))
    if canonical is None:
        near = closest(name)
        hint = f"did you mean {', '.join(near)}?" if near else "see `llmkit zoo list`"
        raise ZooError(f"unknown model {name!r}: {hint}")
    return _entries()[canonical]


def get(name: str) -> ModelSpec:
    """The ModelSpec of a zoo model, by name or alias."""
    return entry(name).spec()


def spec_from_gguf(path: str | Path) -> ModelSpec:
    """ModelSpec from a GGUF file's header alone (metadata + tensor names, no tensor data)."""
    header = read_gguf_header(path)
    return from_gguf_metadata(header.metadata, header.tensor_names, name=Path(path).stem)


def resolve_spec(source: str) -> ModelSpec:
    """The ModelSpec behind a ``--model`` value: a zoo name, a config.json, a directory holding one, or a .gguf."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".gguf":
        return spec_from_gguf(path)
    if path.exists() or path.suffix.lower() == ".json":
        return from_hf_config(path)
    try:
        return get(source)
    except ZooError as e:
        if "unknown model" in str(e):
            raise ZooError(f"{e} (and no file or directory {source!r} exists)") from None
        raise
