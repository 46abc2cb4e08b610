"""``llmkit generate`` / ``llmkit chat`` on the real SmolLM2 GGUF: JSON schema, streaming, errors."""

from __future__ import annotations

import io
import json

import pytest

from llmkit import hub

JSON_KEYS = {"text", "token_ids", "prompt_tokens", "prefill_tokens_per_second", "tokens_per_second", "sequences"}


def test_generate_json_schema(cli, smollm2_gguf):
    code, out, _ = cli(["generate", "--model", str(smollm2_gguf), "--prompt", "The sky is", "-n", "6", "--json"])
    assert code == 0
    result = json.loads(out)
    assert set(result) == JSON_KEYS
    assert isinstance(result["text"], str) and result["text"]
    assert 1 <= len(result["token_ids"]) <= 6 and all(isinstance(t, int) for t in result["token_ids"])
    assert result["prompt_tokens"] == 3
    assert result["prefill_tokens_per_second"] > 0 and result["tokens_per_second"] > 0


def test_generate_streams_the_same_text_as_json(smollm2_gguf, cli):
    args = ["generate", "--model", str(smollm2_gguf), "--chat", "--system", "Answer briefly.",
            "--prompt", "Name a color.", "-n", "12", "--greedy"]
    code, streamed, err = cli(args)
    assert code == 0 and "prompt tokens" in err
    code, out, _ = cli(args + ["--json"])
    assert streamed.rstrip("\n") == json.loads(out)["text"]


def test_sampling_is_reproducible_with_a_seed(cli, smollm2_gguf):
    args = ["generate", "--model", str(smollm2_gguf), "--prompt", "Once upon a time", "-n", "8",
            "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "3", "--json"]
    first = json.loads(cli(args)[1])["token_ids"]
    assert json.loads(cli(args)[1])["token_ids"] == first


def test_missing_model_names_the_pull_command(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "installed_path", lambda model: None)
    code, out, err = cli(["generate", "--prompt", "hi", "--json"])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "llmkit pull smollm2" in err and err.count("\n") == 1


@pytest.mark.parametrize("flags,message", [
    (["--greedy", "--temperature", "0.7"], "--greedy cannot be combined"),
    (["--system", "be nice"], "--system needs --chat"),
    (["--precision", "fp8"], "--precision must be one of"),
    (["--top-p", "1.5"], "top_p must be in"),
    (["--num-beams", "2", "--num-return-sequences", "3"], "cannot exceed num_beams"),
    (["--preset", "wild"], "--preset must be one of"),
    (["--greedy", "--preset", "creative"], "--greedy cannot be combined"),
    (["--early-stopping", "maybe"], "--early-stopping must be"),
    (["--draft", "layers:x"], "layers:N needs an integer"),
    (["--num-beams", "2", "--draft", "int8"], "--draft (speculative decoding) works with"),
])
def test_bad_flags_are_one_line_errors(cli, smollm2_gguf, flags, message):
    code, _, err = cli(["generate", "--model", str(smollm2_gguf), "--prompt", "x", *flags])
    assert code == 2 and message in err and err.count("\n") == 1


def test_chat_reset_and_exit(cli, smollm2_gguf, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Say hi.\n/reset\nSay bye.\n/exit\nnever read\n"))
    code, out, err = cli(["chat", "--model", str(smollm2_gguf), "-n", "8"])
    assert code == 0
    assert "conversation forgotten" in err
    assert out.count("> ") == 4  # three prompts answered or handled, then /exit


def _json(args: list[str], cli) -> dict:
    code, out, err = cli(args)
    assert code == 0, err
    return json.loads(out)


def test_beam_search_returns_scored_sequences(cli, smollm2_gguf, loaded_once):
    result = _json(["generate", "--model", str(smollm2_gguf), "--prompt", "The capital of France is", "-n", "6",
                    "--num-beams", "3", "--num-return-sequences", "2", "--no-repeat-ngram-size", "2",
                    "--length-penalty", "0.8", "--early-stopping", "true", "--json"], cli)
    assert len(result["sequences"]) == 2 and result["token_ids"] == result["sequences"][0]["token_ids"]
    assert result["sequences"][0]["score"] >= result["sequences"][1]["score"]


def test_speculative_greedy_flag_gives_the_greedy_tokens(cli, smollm2_gguf, loaded_once):
    base = ["generate", "--model", str(smollm2_gguf), "--prompt", "Water boils at", "-n", "10", "--json"]
    plain = _json(base, cli)["token_ids"]
    assert _json(base + ["--draft", "layers:10", "--num-assistant-tokens", "3"], cli)["token_ids"] == plain


def test_preset_contrastive_and_batch_flags(cli, smollm2_gguf, loaded_once):
    base = ["generate", "--model", str(smollm2_gguf), "-n", "5", "--json"]
    creative = _json(base + ["--prompt", "A poem:", "--preset", "creative", "--seed", "1", "--min-p", "0.05",
                             "--typical-p", "0.95", "--repetition-penalty", "1.1"], cli)
    assert len(creative["token_ids"]) <= 5
    contrastive = _json(base + ["--prompt", "A poem:", "--penalty-alpha", "0.6", "--top-k", "4"], cli)
    assert len(contrastive["token_ids"]) <= 5
    batch = _json(base + ["--prompt", "Hi", "--prompt", "The three primary colors are"], cli)
    assert [r["prompt_tokens"] for r in batch["results"]] == [1, 5]


def test_generation_config_from_flags():
    from llmkit.advise import PRESETS
    from llmkit.cli.generate import generation_config

    translation = generation_config(False, False, None, None, None, None, 8, [], "translation")
    assert translation.strategy == "beam" and translation.num_beams == PRESETS["translation"].num_beams
    assert translation.no_repeat_ngram_size == PRESETS["translation"].no_repeat_ngram_size
    creative = generation_config(False, False, 0.5, None, None, None, 8, [], "creative")
    assert creative.do_sample and creative.temperature == 0.5 and creative.top_p == PRESETS["creative"].top_p
    contrastive = generation_config(False, False, None, 4, None, None, 8, [], None, penalty_alpha=0.6)
    assert contrastive.strategy == "contrastive"
