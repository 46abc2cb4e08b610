"""The in-process CLI runner every CLI test uses."""

from __future__ import annotations

from typing import Callable

import pytest

from llmkit.cli.main import main

RunCli = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def cli(capsys) -> RunCli:
    """Run ``llmkit argv`` in-process; return (exit code, stdout, stderr)."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


_LOADED: dict = {}


@pytest.fixture
def loaded_once(monkeypatch):
    """Generation tests load each (model, precision) once for the session (loading itself is tested elsewhere)."""
    import llmkit.load

    real = llmkit.load.load

    def load(source, precision="fp32"):
        key = (str(source), precision)
        if key not in _LOADED:
            _LOADED[key] = real(source, precision)
        return _LOADED[key]

    monkeypatch.setattr(llmkit.load, "load", load)
    return load
