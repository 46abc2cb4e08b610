"""llmkit.sheet: the sheet's claims parsed and held against computed values."""

import json

import pytest

from llmkit.cli.main import main
from llmkit.sheet import agrees, all_checks, parse_number


@pytest.mark.parametrize(
    "text, value",
    [("110M", 110e6), ("1.5B", 1.5e9), ("~47B active 8B", 47e9), ("30K", 30e3), ("768", 768), ("~0.45", 0.45),
     ("≈ 2.1 GB", 2.1), ("—", None)],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_agrees_exact_rounded_and_ranges():
    assert agrees(768, "768") and not agrees(769, "768")  # plain integers are exact
    assert agrees(109_482_240, "110M") and not agrees(124_439_808, "117M")  # 5% when rounded
    assert agrees(131072, "128K", kilo=1024)
    assert agrees(76_961_152, "80M-11B") and agrees(11_135_332_352, "80M-11B")  # a family's range
    assert not agrees(20e9, "80M-11B")
    assert agrees(1, "—") is None


@pytest.fixture(scope="module")
def checks():
    return {(c.section, c.row, c.quantity): c for c in all_checks()}


def test_known_errors_of_the_sheet_are_marked(checks):
    # GPT-2 small has 124,439,808 parameters (GPT2LMHeadModel, tied head); the paper's 117M was a miscount.
    assert checks[(2, "GPT-2", "params")].ok is False
    # Mixtral 8x7B: 46.7B total, 12.9B active per token (2 of 8 experts), not "active 8B".
    assert checks[(2, "Mixtral 8×7B", "params")].ok is False
    # GPT-3's context is 2048 tokens (Brown et al. 2020, Table 2.1), not 4096.
    assert checks[(6, "GPT-3", "context")].ok is False
    # Q8_0 is 8.5 bits per weight: a 70B model is ~73 GB, not 56 GB.
    assert checks[(3, "Q8_0", "GB for 70B")].ok is False
    # LLaMA 3.1 uses GQA (8 KV heads): 128K tokens of KV is ~17 GB, not 67 GB.
    assert checks[(12, "LLaMA 3.1 at 128K tokens", "KV bytes")].ok is False


def test_correct_claims_are_confirmed(checks):
    assert checks[(2, "BERT-base", "params")].ok is True
    assert checks[(1, "GPT-2 XL", "d_ff")].ok is True
    assert checks[(12, "LLaMA 2-7B, fp16, 4096 tokens", "KV bytes")].ok is True
    assert checks[(3, "FP16", "bytes/param")].ok is True
    assert checks[(6, "GPT-4", "params")].ok is None  # closed model: nothing to compare


def test_cli_markdown_and_json(tmp_path, capsys):
    out = tmp_path / "sheet.md"
    with pytest.raises(SystemExit) as e:
        main(["sheet", "--format", "md", "--output", str(out)])
    assert e.value.code == 0
    text = out.read_text()
    assert "| row | quantity | llmkit | sheet says |" in text and "✗" in text
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sheet", "--format", "json", "--wrong"])
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["mark"] == "✗" for r in rows)


def test_cli_bad_format_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sheet", "--format", "pdf"])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith("error: --format")
