"""``llmkit plot``: position pictures, and a real model's recorded attention (SmolLM2 GGUF)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmkit.cli.plot import record_attention, self_attention_layers
from llmkit.errors import LlmkitError
from llmkit.load import load
from llmkit.viz import attention_picture

PNG = b"\x89PNG\r\n\x1a\n"




def test_plot_positions_writes_four_pngs(cli, tmp_path):
    code, out, _ = cli(["plot", "positions", "--out", str(tmp_path), "--json"])
    assert code == 0
    files = json.loads(out)["files"]
    assert [f.rsplit("/", 1)[-1] for f in files] == ["sinusoidal.png", "rope.png", "alibi.png", "t5_buckets.png"]
    assert all(Path(f).read_bytes()[:8] == PNG for f in files)


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf):
    return load(smollm2_gguf)


def test_recorded_attention_is_the_models_own(smollm2, tmp_path):
    """Recording switches layer 2 to the reference path: same logits, rows that sum to 1, nothing in the future."""
    ids = torch.tensor([smollm2.tokenizer.encode("The cat sat on the mat.")])
    with torch.no_grad():
        plain = smollm2.model(ids)
    probs, labels = record_attention(smollm2, "The cat sat on the mat.", 2)
    assert self_attention_layers(smollm2.model)[2].record_probs is False  # switched back off
    heads, n = smollm2.spec.n_heads, ids.shape[1]
    assert probs.shape == (heads, n, n) and len(labels) == n
    assert torch.allclose(probs.sum(-1), torch.ones(heads, n), atol=1e-5)
    assert float(probs.triu(1).abs().max()) == 0.0
    with torch.no_grad():
        layer = self_attention_layers(smollm2.model)[2]
        layer.record_probs = True
        recorded = smollm2.model(ids)
        layer.record_probs = False
    assert torch.allclose(recorded, plain, atol=1e-3, rtol=0)
    path = attention_picture(probs, labels, tmp_path / "a.png", "test")
    assert path.read_bytes()[:8] == PNG
    with pytest.raises(LlmkitError, match="--layer must be between 0 and"):
        record_attention(smollm2, "x", smollm2.spec.n_layers)


def test_plot_attention_bad_model_is_one_line_error(cli, tmp_path):
    code, _, err = cli(["plot", "attention", "--model", str(tmp_path / "nope.gguf"), "--prompt", "hi"])
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
