"""``llmkit sheet``: the sheet's numeric tables regenerated from code, with what the sheet says beside them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import typer

from llmkit.errors import LlmkitError


def register(app: typer.Typer) -> None:
    app.command(name="sheet")(sheet)


def sheet(
    fmt: str = typer.Option("table", "--format", help="table (terminal), md (Markdown) or json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    only_wrong: bool = typer.Option(False, "--wrong", help="Show only the rows where the sheet is wrong."),
) -> None:
    """Recompute the sheet's tables (sections 1, 2, 3, 6, 12, 13) and mark where the sheet is wrong."""
    from llmkit.sheet import all_checks, to_markdown

    checks = all_checks()
    wrong = sum(c.ok is False for c in checks)
    if only_wrong:
        checks = [c for c in checks if c.ok is False]
    if fmt == "md":
        text = to_markdown(checks)
    elif fmt == "json":
        text = json.dumps([asdict(c) | {"mark": c.mark} for c in checks], indent=2, ensure_ascii=False)
    elif fmt == "table":
        if output is not None:
            raise LlmkitError("--output needs --format md or json")
        _print_tables(checks)
        print(f"{wrong} of {len(all_checks())} values the sheet prints are off by more than 5% (✗).")
        return
    else:
        raise LlmkitError(f"--format must be table, md or json; got {fmt!r}")
    if output is None:
        print(text)
    else:
        if output.exists() and output.is_dir():
            raise LlmkitError(f"--output {output} is a directory")
        output.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {output}")


def _print_tables(checks) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    groups: dict[tuple[int, str], list] = {}
    for c in checks:
        groups.setdefault((c.section, c.table), []).append(c)
    for (section, title), rows in groups.items():
        table = Table(title=f"Section {section}: {title}", title_justify="left", header_style="bold")
        for h in ("row", "quantity", "llmkit", "sheet says", ""):
            table.add_column(h)
        for c in rows:
            style = {"✓": "green", "✗": "red"}.get(c.mark, "dim")
            table.add_row(c.row, c.quantity, c.computed, c.says, f"[{style}]{c.mark}[/{style}]")
        console.print(table)
