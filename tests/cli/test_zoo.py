"""`llmkit zoo list` / `llmkit zoo show`: tables for humans, one JSON object for machines, one error line."""

from __future__ import annotations

import json
import subprocess
import sys


from llmkit import zoo
from llmkit.calc.params import count_params
from llmkit.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the console script's entry point in-process: (exit code, stdout, stderr)."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_json_has_every_model_with_its_exact_count(capsys):
    code, out, _ = run(capsys, "zoo", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert set(rows) == set(zoo.names())
    assert rows["llama-2-7b"]["params"] == count_params(zoo.get("llama-2-7b")).total == 6_738_415_616
    assert rows["llama-2-7b"]["context"] == 4096
    assert rows["gpt-4"]["published"] is False and rows["gpt-4"]["params"] is None
    assert rows["gpt-4"]["context_claimed"] == "128K"


def test_list_table_for_humans(capsys):
    code, out, _ = run(capsys, "zoo", "list")
    assert code == 0
    assert "mixtral-8x7b" in out and "46.7B" in out and "not published" in out


def test_show_json_has_config_spec_params_and_sheet_claims(capsys):
    code, out, _ = run(capsys, "zoo", "show", "Mixtral 8×7B", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "mixtral-8x7b"
    assert data["config"]["num_local_experts"] == 8
    assert data["spec"]["n_experts"] == 8 and data["spec"]["experts_per_token"] == 2
    assert data["params"]["total"] == 46_702_792_704 and data["params"]["active"] == 12_879_925_248
    assert {r["section"] for r in data["sheet"]} == {2, 6}
    assert any(r["params"] == "8B active (47B total)" for r in data["sheet"])


def test_show_table_for_humans(capsys):
    code, out, _ = run(capsys, "zoo", "show", "llama-2-70b")
    assert code == 0
    assert "68,976,648,192" in out and "GQA" in out and "LLaMA-70B" in out


def test_show_closed_model_states_nothing_is_published(capsys):
    code, out, _ = run(capsys, "zoo", "show", "claude-3.5-sonnet", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["published"] is False and "spec" not in data and data["sheet"][0]["context"] == "200K"


def test_unknown_name_is_one_error_line_with_close_names(capsys):
    code, out, err = run(capsys, "zoo", "show", "llama-2-8b")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: unknown model 'llama-2-8b'")
    assert "llama-2-7b" in err


def test_unknown_name_from_the_console_script_has_no_traceback():
    p = subprocess.run([sys.executable, "-m", "llmkit.cli.main", "zoo", "show", "mistral-8b"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr.startswith("error: unknown model") and "Traceback" not in p.stderr
    assert "mistral-7b" in p.stderr
