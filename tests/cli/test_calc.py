"""`llmkit calc`: the JSON contract scripts rely on, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest

from llmkit import zoo
from llmkit.calc.kvcache import kv_cache_bytes
from llmkit.calc.params import count_params




def test_params_json_contract(cli):
    code, out, _ = cli(["calc", "params", "--model", "mixtral-8x7b", "--json"])
    data = json.loads(out)
    c = count_params(zoo.get("mixtral-8x7b"))
    assert code == 0
    assert (data["total"], data["non_embedding"], data["active"]) == (c.total, c.non_embedding, c.active)
    assert all(isinstance(data[k], int) for k in ("total", "non_embedding", "active"))
    code, out, _ = cli(["calc", "params", "--model", "llama-2-7b", "--json"])
    assert "active" not in json.loads(out)  # dense: no active field


def test_params_accepts_config_json_and_gguf(cli, tmp_path, smollm2_gguf):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(zoo.entry("llama-2-7b").config)))
    _, out, _ = cli(["calc", "params", "--model", str(cfg), "--json"])
    assert json.loads(out)["total"] == 6_738_415_616
    _, out, _ = cli(["calc", "params", "--model", str(smollm2_gguf), "--json"])
    assert json.loads(out)["total"] == count_params(zoo.get("smollm2-135m-instruct")).total


@pytest.mark.parametrize("dtype", ["fp16", "fp8", "q4_0"])
def test_kv_json_contract(cli, dtype):
    spec = zoo.get("mistral-7b")
    code, out, _ = cli(["calc", "kv", "--model", "mistral-7b", "--seq-len", "8192", "--batch", "2",
                        "--dtype", dtype, "--json"])
    data = json.loads(out)
    assert code == 0 and data["bytes"] == kv_cache_bytes(spec, 8192, 2, dtype)
    # auto applies Mistral's own 4096-token sliding window; none does not
    _, out, _ = cli(["calc", "kv", "--model", "mistral-7b", "--seq-len", "8192", "--batch", "2",
                     "--dtype", dtype, "--window", "none", "--json"])
    assert json.loads(out)["bytes"] == 2 * data["bytes"]


@pytest.mark.parametrize(
    "mode, extra, keys",
    [
        ("train", ["--optimizer", "adamw"], {"weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes"}),
        ("finetune", ["--method", "qlora", "--rank", "16"], {"weights_bytes", "gradients_bytes", "optimizer_bytes"}),
        ("infer", ["--format", "q4_k_m"], {"weights_bytes", "kv_cache_bytes"}),
    ],
)
def test_memory_json_contract(cli, mode, extra, keys):
    code, out, _ = cli(["calc", "memory", "--mode", mode, "--model", "llama-2-7b", "--seq-len", "1024", *extra,
                        "--json"])
    data = json.loads(out)
    assert code == 0 and keys <= set(data["breakdown"])
    assert data["total_bytes"] == sum(data["breakdown"].values())


def test_fit_latency_flops_and_tokens_run(cli):
    for args in (["calc", "fit", "--model", "llama-2-70b", "--device", "h100-sxm", "--count", "2"],
                 ["calc", "latency", "--model", "llama-2-7b", "--device", "a100-80gb"],
                 ["calc", "flops", "--model", "gpt2", "--tokens-per-second", "1e5", "--device", "a100-80gb"],
                 ["calc", "tokens", "--words", "750"], ["calc", "devices"]):
        code, out, _ = cli(args + ["--json"])
        assert code == 0 and json.loads(out)
    _, out, _ = cli(["calc", "fit", "--model", "llama-2-70b", "--device", "h100-sxm", "--count", "1", "--json"])
    assert json.loads(out)["fits"] is False  # 140 GB of bf16 weights on one 80 GB card


@pytest.mark.parametrize(
    "args, says",
    [
        (["calc", "params", "--model", "llama-7"], "llama"),  # unknown name: closest matches
        (["calc", "kv", "--model", "gpt2", "--dtype", "fp12"], "fp12"),
        (["calc", "kv", "--model", "gpt2", "--seq-len", "-5"], "seq_len"),
        (["calc", "memory", "--model", "gpt2", "--mode", "train", "--zero", "4"], "zero"),
        (["calc", "memory", "--model", "gpt2", "--mode", "finetune", "--rank", "0"], "rank"),
        (["calc", "memory", "--model", "gpt-4", "--mode", "infer"], "published"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, args, says):
    code, _, err = cli(args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says.lower() in lines[0].lower()


def test_broken_config_json_no_traceback(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "llama", "hidden_size": 64,')
    proc = subprocess.run([sys.executable, "-m", "llmkit.cli.main", "calc", "params", "--model", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not valid JSON" in proc.stderr
    bad.write_text('{"model_type": "llama", "hidden_size": 64}')
    proc = subprocess.run([sys.executable, "-m", "llmkit.cli.main", "calc", "params", "--model", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "missing required field" in proc.stderr and "Traceback" not in proc.stderr
