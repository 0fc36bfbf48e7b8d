"""Each image's Python install, pinned: images/<name>/requirements.in -> images/<name>/requirements.txt.

    make image-requirements                       # (re)write every images/<name>/requirements.txt
    .venv/bin/python images/requirements.py --check   # exit 1 when one is out of date (a test runs it)

``requirements.in`` says what an image's steps need: the project with extras
(``diffucoder[data]``, read from ``pyproject.toml``) and third-party packages by name, never
a version. ``requirements.txt`` is the whole install that follows from it: every package of
the dependency closure, pinned to its ``constraints.txt`` version. The Dockerfile installs
exactly that file (``pip install --no-deps -r``, after torch from the image's torch index),
then the project with ``--no-deps``, then ``pip check``; the step contract tests
(``tests/platform/test_step_contracts.py``) build their environments from the same file.

The closure is read from the installed distributions' metadata of the project venv, whose
versions are the ``constraints.txt`` pins (``make setup``): no resolver, no network, the same
answer each time. Markers are evaluated for the images' interpreter (CPython 3.11, Linux
x86_64). A package the closure needs that ``constraints.txt`` does not pin, or that the venv
has at another version, is an error that names it.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = ROOT / "images"
PROJECT = "diffucoder"
# The interpreter of every image (python:3.11.x-slim-bookworm on linux/amd64).
TARGET_PYTHON = (3, 11)
TARGET_MARKERS = {
    **default_environment(),
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
    "python_version": "3.11", "python_full_version": "3.11.13", "implementation_version": "3.11.13",
    "os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64",
}


class RequirementsError(Exception):
    """An image's requirements cannot be pinned; the message names the package and the fix."""


def read_constraints(path: Path = ROOT / "constraints.txt") -> dict[str, str]:
    """canonical name -> pinned version."""
    pins: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not version.strip():
            raise RequirementsError(f"{path.name}:{number}: {line!r} is not a 'name==version' pin")
        pins[canonicalize_name(name)] = version.strip()
    return pins


def project_requirements(extras: set[str], pyproject: Path = ROOT / "pyproject.toml") -> list[Requirement]:
    """The project's dependencies plus those of ``extras`` (self-references like
    ``diffucoder[data,train]`` in an extra are expanded)."""
    meta = tomllib.loads(pyproject.read_text())["project"]
    optional = meta.get("optional-dependencies", {})
    out = [Requirement(r) for r in meta.get("dependencies", [])]
    pending, seen = sorted(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise RequirementsError(f"{PROJECT}[{extra}]: pyproject.toml has no extra {extra!r} "
                                    f"(it has: {', '.join(sorted(optional))})")
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == PROJECT:
                pending += sorted(req.extras)
            else:
                out.append(req)
    return out


def read_in_file(path: Path) -> list[Requirement]:
    """The requirements of ``requirements.in``: names with optional extras, no versions."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        if req.specifier or req.url or req.marker:
            raise RequirementsError(f"{path.relative_to(ROOT)}:{number}: {text!r}: give only a name "
                                    "(and extras); the version comes from constraints.txt")
        out.append(req)
    return out


def closure(requirements: list[Requirement], pins: dict[str, str]) -> dict[str, str]:
    """Every distribution the requirements need (markers for the images' interpreter), with its
    pinned version; checks each pin against the venv's metadata and every requirement's range."""
    if sys.version_info[:2] != TARGET_PYTHON:
        raise RequirementsError(f"run with Python {'.'.join(map(str, TARGET_PYTHON))} (the images' "
                                f"interpreter): the project venv's metadata is read, .venv/bin/python")
    found: dict[str, str] = {}
    done: set[tuple[str, str]] = set()
    pending = [(req, "requirements.in") for req in requirements]
    while pending:
        req, needed_by = pending.pop()
        name = canonicalize_name(req.name)
        if name == PROJECT:
            pending += [(r, PROJECT) for r in project_requirements(set(req.extras))]
            continue
        if name not in pins:
            raise RequirementsError(f"{req.name} (needed by {needed_by}) is not pinned in constraints.txt: "
                                    "install it in the project venv and run make constraints")
        version = pins[name]
        if not req.specifier.contains(version, prereleases=True):
            raise RequirementsError(f"{needed_by} requires {req}, but constraints.txt pins "
                                    f"{req.name}=={version}")
        found[name] = version
        for extra in ("", *sorted(req.extras)):
            if (name, extra) in done:
                continue
            done.add((name, extra))
            try:
                dist = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                raise RequirementsError(f"{req.name} (needed by {needed_by}) is not installed in "
                                        f"{sys.prefix}: run make setup") from None
            installed = dist.version.split("+", 1)[0]
            if installed != version.split("+", 1)[0]:
                raise RequirementsError(f"{sys.prefix} has {req.name} {dist.version} but constraints.txt "
                                        f"pins {version}: run make setup")
            for text in dist.requires or []:
                sub = Requirement(text)
                if sub.marker is None or sub.marker.evaluate({**TARGET_MARKERS, "extra": extra}):
                    pending.append((sub, f"{dist.metadata['Name']} {dist.version}"))
    return found


def render(name: str, pins: dict[str, str]) -> str:
    """The text of ``images/<name>/requirements.txt``."""
    torch = pins.get("torch")
    header = [
        f"# diffucoder-{name}: the image's whole Python install besides the project, pinned.",
        f"# Generated from images/{name}/requirements.in and constraints.txt by `make image-requirements`;",
        "# do not edit. Install order (Dockerfile and step contract tests alike):",
    ]
    if torch:
        header.append(f"#   1. torch=={torch} from the image's torch index (CPU or CUDA build; a plain")
        header.append("#      index would pull a CUDA build); the line below then only checks the version")
    header += [
        f"#   {2 if torch else 1}. pip install --no-deps -r images/{name}/requirements.txt",
        f"#   {3 if torch else 2}. pip install --no-deps <the project>; then pip check",
    ]
    return "\n".join(header + [f"{n}=={v}" for n, v in sorted(pins.items())]) + "\n"


def image_names() -> list[str]:
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/requirements.in"))


def generate(name: str, pins: dict[str, str] | None = None) -> str:
    pins = read_constraints() if pins is None else pins
    return render(name, closure(read_in_file(IMAGES_DIR / name / "requirements.in"), pins))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    parser.add_argument("names", nargs="*", help="images (default: every images/<name>/requirements.in)")
    args = parser.parse_args(argv)
    names = args.names or image_names()
    unknown = sorted(set(names) - set(image_names()))
    if unknown:
        print(f"images/requirements.py: no images/<name>/requirements.in for {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    try:
        pins = read_constraints()
        texts = {name: generate(name, pins) for name in names}
    except RequirementsError as err:
        print(f"images/requirements.py: {err}", file=sys.stderr)
        return 1
    stale = 0
    for name, text in texts.items():
        path = IMAGES_DIR / name / "requirements.txt"
        old = path.read_text() if path.exists() else ""
        if old == text:
            continue
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       str(path.relative_to(ROOT)), "generated"))
        else:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)  # atomic: a reader never sees half a file
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"{stale} requirements file(s) out of date: run make image-requirements", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
