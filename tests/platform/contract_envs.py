"""Python environments installed the way the project's images install theirs (step contract tests).

    with image_envs(["base", "train"]) as envs:     # built once, cached by requirements hash
        envs["train"].python                         # <venv>/bin/python
        envs["train"].env(HOME="/tmp/x")             # a clean process env with that venv first on PATH
    image_name(step_image_ref)                       # "ghcr.io/.../diffucoder-train:0.1.0" -> "train"

An image's Python install is ``images/<name>/requirements.txt`` (``images/requirements.py``).
Its environment here gets the same install as the Dockerfile's: torch at the file's pin (the
CPU build lying on this machine, ``--no-index --no-deps``, so pip can never fetch a multi-GB
CUDA build; its dependencies are pinned in the file), the file with ``--no-deps``, the project's
wheel (built once from a copy of the image's build context) with ``--no-deps``, then
``pip check``. No bytecode is compiled (``--no-compile``: a cache, and half the install time).

Cache: ``$DIFFUCODER_CONTRACT_CACHE`` or ``~/.cache/diffucoder-contract-envs``, one venv per
hash of (requirements file, Python version, install recipe): images with the same file share
one. The project is reinstalled into a cached venv only when its sources changed. A file lock
per venv keeps concurrent test sessions apart: building or reinstalling takes it exclusively,
running steps holds it shared. Venvs unused for ``PRUNE_AFTER_DAYS`` (requirements since
changed) are deleted when no session holds them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "images"
CACHE_VAR = "DIFFUCODER_CONTRACT_CACHE"
# Bump when the way an environment is installed changes: old cached venvs are then not reused.
INSTALL_RECIPE = 1
# What each image's Dockerfile copies into its build context for `pip install .`
# (images/<name>/Dockerfile.dockerignore), minus what it drops.
BUILD_CONTEXT = ("pyproject.toml", "README.md", "constraints.txt", "src", "configs")
DROPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
PIP_TIMEOUT_S = 900
PRUNE_AFTER_DAYS = 7


class ContractEnvError(Exception):
    """An environment could not be built; the message holds the command and its output."""


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "diffucoder-contract-envs")


def image_names() -> list[str]:
    """The project's Python images (their install is a requirements.in): what a step can run on.
    images/minio is MinIO built from source, with no Python."""
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile") if (p.parent / "requirements.in").is_file())


def image_name(ref: str) -> str:
    """The ``images/<name>`` an image reference of the compiled pipeline is built from."""
    from diffucoder.kube.config import image_ref
    refs = {image_ref(name): name for name in image_names()}
    if ref not in refs:
        raise ContractEnvError(f"image {ref!r} is none of the project's images "
                               f"({', '.join(sorted(refs))}): no environment can stand in for it")
    return refs[ref]


def requirements_file(name: str) -> Path:
    path = IMAGES_DIR / name / "requirements.txt"
    if not path.is_file():
        raise ContractEnvError(f"{path.relative_to(ROOT)} is missing: run make image-requirements")
    return path


def pins(requirements: str) -> dict[str, str]:
    out = {}
    for line in requirements.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower()] = version.strip()
    return out


def env_key(requirements: str) -> str:
    python = ".".join(map(str, sys.version_info[:3]))
    digest = hashlib.sha256(f"{INSTALL_RECIPE}\n{python}\n{requirements}".encode())
    return digest.hexdigest()[:16]


def project_hash() -> str:
    """Hash of what ``pip install .`` reads from the build context (the image's COPY)."""
    digest = hashlib.sha256()
    for top in BUILD_CONTEXT:
        base = ROOT / top
        files = [base] if base.is_file() else sorted(
            p for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            and not any(part.endswith(".egg-info") for part in p.parts))
        for path in files:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def dockerfile_env(name: str) -> dict[str, str]:
    """The ``ENV`` of ``images/<name>/Dockerfile`` as its containers see it, with the image's
    config folder mapped to the checkout's ``configs/`` (the same files)."""
    from dockerfile_rules import instructions  # tests/platform/dockerfile_rules.py
    env: dict[str, str] = {}
    for keyword, args in instructions((IMAGES_DIR / name / "Dockerfile").read_text()):
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return {k: v.replace("/opt/diffucoder/configs", str(ROOT / "configs")) for k, v in env.items()
            if not k.startswith("PIP_")}  # pip's settings only matter while the image builds


@dataclass
class ContractEnv:
    """A built venv: ``python``, ``bin``, and ``env()`` for processes that should run in it."""

    path: Path
    images: tuple[str, ...]
    build_seconds: float = 0.0     # 0 when it came from the cache
    project_seconds: float = 0.0   # 0 when the installed project was current
    image_env: dict[str, str] = field(default_factory=dict)   # the image's Dockerfile ENV

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """A process environment as in the image: its Dockerfile's ENV, this venv's python3 first
        on PATH, nothing inherited that could import from the checkout (no PYTHONPATH)."""
        env = {"PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **self.image_env}
        for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # this machine's settings
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra)
        return env


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n")
        out.flush()
        result = subprocess.run(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT,
                                env=env, timeout=PIP_TIMEOUT_S)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise ContractEnvError(f"{' '.join(map(str, cmd))} failed (exit {result.returncode}); "
                               f"log {log}:\n{tail}")


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")}
    env.update({"DS_BUILD_OPS": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return env


def _build(path: Path, requirements: Path) -> None:
    """The image's install, into a new venv at ``path`` (the caller holds the lock)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    log = path / "build.log"
    _run([sys.executable, "-m", "venv", path], log)
    python, env = path / "bin" / "python", _pip_env()
    pip = [python, "-m", "pip", "install", "--no-compile", "--progress-bar", "off"]
    torch = pins(requirements.read_text()).get("torch")
    if torch:
        # The CPU wheel from the machine's find-links only (--no-index): never a CUDA build.
        try:
            _run([*pip, "--no-index", "--no-deps", f"torch=={torch}"], log, env)
        except ContractEnvError as err:
            raise ContractEnvError(f"no CPU wheel of torch=={torch} in pip's find-links (this machine "
                                   f"keeps one in /opt/wheels; elsewhere set PIP_FIND_LINKS to a folder "
                                   f"holding torch-{torch}+cpu): {err}") from None
        wheel = next(path.glob("lib/python*/site-packages/torch-*.dist-info")).name
        if "+cpu" not in wheel:
            raise ContractEnvError(f"{path}: torch is {wheel}, not a CPU build")
    _run([*pip, "--no-deps", "-r", requirements], log, env)


def build_project_wheel(dest: Path) -> Path:
    """The project's wheel, built from a copy of the image's build context (what the
    Dockerfile's ``pip install .`` builds: a pure-Python wheel, the same from any interpreter)."""
    dest.mkdir(parents=True, exist_ok=True)
    log = dest / "wheel.log"
    with tempfile.TemporaryDirectory(prefix="diffucoder-context-") as tmp:
        context = Path(tmp)
        for top in BUILD_CONTEXT:
            source = ROOT / top
            if source.is_dir():
                shutil.copytree(source, context / top, ignore=DROPPED)
            else:
                shutil.copy2(source, context / top)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--progress-bar", "off", "-w", dest,
              context], log, _pip_env())
    (wheel,) = dest.glob("diffucoder-*.whl")
    return wheel


def _install_project(path: Path, wheel: Path) -> None:
    """``pip install --no-deps`` of the project, then ``pip check`` (as the Dockerfile)."""
    log = path / "build.log"
    python, env = path / "bin" / "python", _pip_env()
    _run([python, "-m", "pip", "install", "--no-compile", "--progress-bar", "off", "--no-deps",
          "--force-reinstall", wheel], log, env)
    _run([python, "-m", "pip", "check"], log, env)


@contextlib.contextmanager
def _locked(lock_path: Path, mode: int) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prune(max_age_days: float = PRUNE_AFTER_DAYS) -> list[Path]:
    """Delete the cached venvs nobody used for ``max_age_days`` and nobody holds now."""
    removed = []
    for lock_path in cache_root().glob("*.lock"):
        path = lock_path.with_suffix("")
        used = path / "last-used"
        age_days = (time.time() - used.stat().st_mtime) / 86400 if used.exists() else float("inf")
        if age_days < max_age_days:
            continue
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            fcntl.flock(handle, fcntl.LOCK_UN)
    return removed


def _ready(path: Path, project: str) -> bool:
    state = path / "state.json"
    return state.is_file() and json.loads(state.read_text()).get("project") == project


def prepare(requirements: Path, images: tuple[str, ...], project: str,
            wheel: Callable[[], Path]) -> ContractEnv:
    """Build (or reuse) the venv of one requirements file and put the current project in it
    (``wheel()`` gives the project's wheel; called only when the venv's copy is stale)."""
    key = env_key(requirements.read_text())
    path = cache_root() / key
    env = ContractEnv(path, images)
    lock = cache_root() / f"{key}.lock"
    with _locked(lock, fcntl.LOCK_SH):
        if _ready(path, project):
            (path / "last-used").touch()
            return env
    with _locked(lock, fcntl.LOCK_EX):
        state = path / "state.json"
        built = state.is_file()
        if not built:
            start = time.monotonic()
            _build(path, requirements)
            env.build_seconds = time.monotonic() - start
            state.write_text(json.dumps({"images": list(images), "project": ""}))
        if not _ready(path, project):
            start = time.monotonic()
            _install_project(path, wheel())
            env.project_seconds = time.monotonic() - start
            tmp = state.with_suffix(".tmp")
            tmp.write_text(json.dumps({"images": list(images), "project": project}))
            tmp.replace(state)
        (path / "last-used").touch()
    return env


@contextlib.contextmanager
def image_envs(names: list[str]) -> Iterator[dict[str, ContractEnv]]:
    """The environments of ``names`` (built in parallel when missing), held with shared locks so
    no other session reinstalls the project under a running step."""
    by_file: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        by_file.setdefault(requirements_file(name).read_text(), []).append(name)
    project = project_hash()
    jobs = [(requirements_file(group[0]), tuple(group)) for group in by_file.values()]
    with tempfile.TemporaryDirectory(prefix="diffucoder-wheel-") as tmp, \
            ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        wheel = _once(lambda: build_project_wheel(Path(tmp)))
        built = list(pool.map(lambda job: prepare(job[0], job[1], project, wheel), jobs))
    envs = {name: dataclasses.replace(env, image_env=dockerfile_env(name))
            for env in built for name in env.images}
    with contextlib.ExitStack() as stack:
        for env in built:
            stack.enter_context(_locked(cache_root() / f"{env.path.name}.lock", fcntl.LOCK_SH))
            if not _ready(env.path, project):  # another session changed it between our steps
                raise ContractEnvError(f"{env.path} was changed by another session; run again")
        prune()
        yield envs


def env_from_requirements(text: str, label: str) -> ContractEnv:
    """An environment for a requirements text that is not a committed image file (the tests'
    negative cases), cached like the images'."""
    folder = cache_root() / "requirements"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{env_key(text)}.txt"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    with tempfile.TemporaryDirectory(prefix="diffucoder-wheel-") as tmp:
        return prepare(path, (label,), project_hash(), _once(lambda: build_project_wheel(Path(tmp))))


def _once(make: Callable[[], Path]) -> Callable[[], Path]:
    """``make()`` at the first call only, whichever thread calls first; the others wait for it."""
    lock, done = threading.Lock(), []

    def get() -> Path:
        with lock:
            if not done:
                done.append(make())
            return done[0]
    return get
