"""calc.hardware: the catalogue file, its datasheet values and lookups."""

from __future__ import annotations

import pytest

from llmkit.calc.hardware import devices, get_device
from llmkit.errors import LlmkitError

REQUIRED = ("a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l4", "l40s", "rtx-3090", "rtx-4090", "t4",
            "v100", "mi300x", "cpu")


def test_the_catalogue_has_every_device_the_issue_names_with_a_source():
    catalogue = devices()
    assert set(REQUIRED) <= set(catalogue)
    for d in catalogue.values():
        assert d.source and d.memory_bytes > 0 and d.bandwidth > 0
        assert "fp16" in d.peak_flops and "fp32" in d.peak_flops
        assert d.peak("fp16") >= d.peak("fp32")


@pytest.mark.parametrize(
    ("key", "tflops", "gbs", "gib"),
    # vendor datasheets, dense 16-bit tensor peak
    [("a100-80gb", 312, 2039, 80), ("a100-40gb", 312, 1555, 40), ("h100-sxm", 989.4, 3350, 80),
     ("h200", 989.4, 4800, 141), ("mi300x", 1307.4, 5300, 192), ("t4", 65, 320, 16)],
)
def test_datasheet_values(key, tflops, gbs, gib):
    d = get_device(key)
    assert d.peak("fp16") == tflops * 1e12
    assert d.bandwidth == gbs * 1e9
    assert d.memory_bytes == gib * 2**30


def test_lookup_by_alias_and_close_matches():
    assert get_device("A100").key == "a100-80gb"
    assert get_device("rtx_4090").key == "rtx-4090"
    with pytest.raises(LlmkitError, match="did you mean"):
        get_device("h100-sxn")
    with pytest.raises(LlmkitError, match="no bf16"):
        get_device("t4").peak("bf16")
