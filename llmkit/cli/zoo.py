"""``llmkit zoo list`` and ``llmkit zoo show NAME``: the sheet's models, their published configs and counts."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmkit import zoo
from llmkit.calc.params import ParamCount, count_params

app = typer.Typer(help="The models the sheet names, with their exact published configs.", no_args_is_help=True)


def human(n: int) -> str:
    """A parameter count the way the sheet writes it: 124M, 6.74B."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _context_claim(e: zoo.ZooEntry) -> str:
    return next((r.claims["context"] for r in e.sheet if "context" in r.claims), "—")


def _summary(e: zoo.ZooEntry) -> dict[str, Any]:
    """One row of `zoo list`: computed figures for a published model, the sheet's claims for a closed one."""
    row: dict[str, Any] = {"name": e.name, "title": e.title, "published": e.published, "source": e.hf_repo or e.source}
    if not e.published:
        return {**row, "family": None, "params": None, "context": None, "context_claimed": _context_claim(e)}
    spec = e.spec()
    return {**row, "family": spec.family, "params": count_params(spec).total, "context": spec.max_positions}


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="One JSON object for machines.")) -> None:
    """Every zoo model: family, exact parameter count, context, source."""
    rows = [_summary(zoo.entry(n)) for n in zoo.names()]
    if as_json:
        print(json.dumps({"models": rows}))
        return
    table = Table(title="llmkit zoo (params: exact, transformers' counting convention)")
    for col, justify in (("name", "left"), ("family", "left"), ("params", "right"), ("context", "right"),
                         ("source", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        if r["published"]:
            table.add_row(r["name"], r["family"], human(r["params"]), f"{r['context']:,}", r["source"])
        else:
            table.add_row(r["name"], "closed", "not published", f"{r['context_claimed']} (claimed)", r["source"])
    Console().print(table)


def _params_json(c: ParamCount) -> dict[str, Any]:
    return {"total": c.total, "non_embedding": c.non_embedding, "active": c.active, "by_component": c.by_component,
            "approx_12Ld2": c.approx_12Ld2, "approx_Vd_12Ld2": c.approx_Vd_12Ld2, "convention": c.convention}


def _show_json(e: zoo.ZooEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": e.name, "title": e.title, "published": e.published, "hf_repo": e.hf_repo, "source": e.source,
        "aliases": list(e.aliases), "notes": e.notes, "omitted": list(e.omitted), "config": dict(e.config),
        "sources": dict(e.sources),
        "sheet": [{"section": r.section, "table": r.table, "row": r.row, **r.claims} for r in e.sheet],
    }
    if e.published:
        spec = e.spec()
        out["spec"] = spec.to_dict()
        out["params"] = _params_json(count_params(spec))
    return out


def _print_show(e: zoo.ZooEntry) -> None:
    console = Console()
    console.print(f"[bold]{e.title}[/bold] ({e.name})  aliases: {', '.join(e.aliases)}")
    console.print(f"source: {e.source}")
    if e.notes:
        console.print(f"notes: {e.notes}")
    if e.published:
        spec = e.spec()
        c = count_params(spec)
        facts = Table(title="architecture and parameters (computed)")
        facts.add_column("value")
        facts.add_column("", justify="right")
        derived = {
            "family": spec.family, "layers": f"{spec.n_encoder_layers}+{spec.n_layers}" if spec.n_encoder_layers
            else spec.n_layers, "d_model": spec.d_model, "heads / kv heads": f"{spec.n_heads} / {spec.kv_heads}",
            "attention": spec.attention_kind, "d_head": spec.d_head, "d_ff": spec.d_ff,
            "ffn": spec.ffn_kind + (f", {spec.n_experts} experts top-{spec.experts_per_token}" if spec.is_moe else ""),
            "vocab": spec.vocab_size, "context": spec.max_positions, "position": spec.position,
            "sliding window": spec.sliding_window or "—", "tied embeddings": spec.tied_embeddings,
            "params total": f"{c.total:,}", "params non-embedding": f"{c.non_embedding:,}",
            "params active / token": f"{c.active:,}",
            **{f"  {k}": f"{v:,}" for k, v in c.by_component.items()},
            "12·L·d² (sheet)": f"{c.approx_12Ld2:,} ({c.approx_12Ld2_error:+.1%})",
            "V·d + 12·L·d² (sheet)": f"{c.approx_Vd_12Ld2:,} ({c.approx_Vd_12Ld2_error:+.1%})",
            "convention": c.convention,
        }
        for k, v in derived.items():
            facts.add_row(k, str(v))
        console.print(facts)
        config = Table(title="published config")
        config.add_column("key")
        config.add_column("value")
        for k, v in e.config.items():
            config.add_row(k, json.dumps(v) if not isinstance(v, str) else v)
        console.print(config)
    else:
        console.print("[bold]no architecture is published[/bold]: only the sheet's claims below")
    for r in e.sheet:
        claims = ", ".join(f"{k} {v}" for k, v in r.claims.items())
        console.print(f"sheet §{r.section} ({r.table}), row {r.row!r}: {claims}")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="A zoo name or alias, e.g. llama-2-7b or 'LLaMA 2-7B'."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object for machines."),
) -> None:
    """One model: published config, derived values, sources, and the sheet's claims beside the computed counts."""
    e = zoo.entry(name)
    if as_json:
        print(json.dumps(_show_json(e)))
    else:
        _print_show(e)
