"""``llmkit generate`` / ``llmkit chat`` on the real SmolLM2 GGUF: JSON schema, streaming, errors."""

from __future__ import annotations

import io
import json

import pytest

from llmkit import hub
from llmkit.cli.main import main

JSON_KEYS = {"text", "token_ids", "prompt_tokens", "prefill_tokens_per_second", "tokens_per_second"}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_generate_json_schema(smollm2_gguf, capsys):
    code, out, _ = _run(["generate", "--model", str(smollm2_gguf), "--prompt", "The sky is", "-n", "6", "--json"],
                        capsys)
    assert code == 0
    result = json.loads(out)
    assert set(result) == JSON_KEYS
    assert isinstance(result["text"], str) and result["text"]
    assert 1 <= len(result["token_ids"]) <= 6 and all(isinstance(t, int) for t in result["token_ids"])
    assert result["prompt_tokens"] == 3
    assert result["prefill_tokens_per_second"] > 0 and result["tokens_per_second"] > 0


def test_generate_streams_the_same_text_as_json(smollm2_gguf, capsys):
    args = ["generate", "--model", str(smollm2_gguf), "--chat", "--system", "Answer briefly.",
            "--prompt", "Name a color.", "-n", "12", "--greedy"]
    code, streamed, err = _run(args, capsys)
    assert code == 0 and "prompt tokens" in err
    code, out, _ = _run(args + ["--json"], capsys)
    assert streamed.rstrip("\n") == json.loads(out)["text"]


def test_sampling_is_reproducible_with_a_seed(smollm2_gguf, capsys):
    args = ["generate", "--model", str(smollm2_gguf), "--prompt", "Once upon a time", "-n", "8",
            "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "3", "--json"]
    first = json.loads(_run(args, capsys)[1])["token_ids"]
    assert json.loads(_run(args, capsys)[1])["token_ids"] == first


def test_missing_model_names_the_pull_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "installed_path", lambda model: None)
    code, out, err = _run(["generate", "--prompt", "hi", "--json"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "llmkit pull smollm2" in err and err.count("\n") == 1


@pytest.mark.parametrize("flags,message", [
    (["--greedy", "--temperature", "0.7"], "--greedy cannot be combined"),
    (["--system", "be nice"], "--system needs --chat"),
    (["--precision", "fp8"], "--precision must be one of"),
    (["--top-p", "1.5"], "top_p must be in"),
])
def test_bad_flags_are_one_line_errors(smollm2_gguf, capsys, flags, message):
    code, _, err = _run(["generate", "--model", str(smollm2_gguf), "--prompt", "x", *flags], capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_chat_reset_and_exit(smollm2_gguf, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Say hi.\n/reset\nSay bye.\n/exit\nnever read\n"))
    code, out, err = _run(["chat", "--model", str(smollm2_gguf), "-n", "8"], capsys)
    assert code == 0
    assert "conversation forgotten" in err
    assert out.count("> ") == 4  # three prompts answered or handled, then /exit
