"""Compile the pipeline to versioned IR YAML.

    diffucoder pipeline compile                          # -> ./diffucoder-<version>.yaml
    diffucoder pipeline compile --output-dir pipelines/compiled --with-revision

The project commits ``pipelines/compiled/diffucoder-<version>.yaml`` (``make compile``; a
test keeps it in sync with the code). ``--with-revision`` adds the git revision of the
checkout the package was installed from to the file name, as uploads do for the pipeline
version name (``unknown`` outside a checkout).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from kfp import compiler

from diffucoder import __version__
from diffucoder_kfp.pipeline import PIPELINE_NAME, diffucoder_pipeline


def git_revision(cwd: Path | None = None) -> str:
    """Short git revision, with ``-dirty`` when the tree has changes; ``unknown`` outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=cwd, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def version_name(with_revision: bool = True) -> str:
    """Pipeline version name: ``<package version>+g<revision>``."""
    return f"{__version__}+g{git_revision()}" if with_revision else __version__


def compiled_filename(with_revision: bool = False) -> str:
    return f"{PIPELINE_NAME}-{version_name(with_revision)}.yaml"


def compile_pipeline(output_dir: Path | str = ".", with_revision: bool = False) -> Path:
    """Write the compiled pipeline into ``output_dir`` (atomically); its path."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / compiled_filename(with_revision)
    tmp = path.with_name(f".{path.stem}.tmp.yaml")
    compiler.Compiler().compile(diffucoder_pipeline, str(tmp))
    tmp.replace(path)
    return path
