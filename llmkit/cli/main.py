"""The ``llmkit`` command: parse, call the library, print. No logic lives only here.

Each command group is a module of ``llmkit.cli`` exposing ``app`` (a typer app)
or ``register(app)``; this file wires them together and turns a
:class:`~llmkit.errors.LlmkitError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from llmkit.errors import LlmkitError

app = typer.Typer(
    name="llmkit",
    help="The Transformer & LLM cheat sheet made executable: plan, run and check language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command groups: (module under llmkit.cli, sub-command name or None for top-level commands).
GROUPS: list[tuple[str, str | None]] = [
    ("zoo", "zoo"),
    ("pull", None),
    ("calc", "calc"),
    ("sheet", None),
    ("advise", "advise"),
    ("generate", None),
    ("tokenize", "tokenize"),
    ("plot", "plot"),
]


@app.command()
def version() -> None:
    """Print llmkit's version."""
    from llmkit import __version__

    print(__version__)


def _wire() -> None:
    for module, name in GROUPS:
        mod = importlib.import_module(f"llmkit.cli.{module}")
        if name is None:
            mod.register(app)
        else:
            app.add_typer(mod.app, name=name)


@app.callback()
def _root() -> None:
    """The Transformer & LLM cheat sheet made executable: plan, run and check language models."""


_wire()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: a user error is one line on stderr and exit code 2."""
    try:
        app(args=argv)
    except LlmkitError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
