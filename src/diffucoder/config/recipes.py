"""Find a stage's recipe YAML for a preset: ``recipe_path("tiny-cpu", "curate")``.

Recipes live in ``configs/<preset>/<stage>.yaml``. They are searched in
``$DIFFUCODER_CONFIGS`` (the images set it to ``/opt/diffucoder/configs``), then in the
``configs/`` folder of the checkout this package was installed from (an editable install),
then in ``<prefix>/share/diffucoder/configs``, where an installed distribution puts them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from diffucoder.config.loader import ConfigError


def config_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("DIFFUCODER_CONFIGS"):
        dirs.append(Path(os.environ["DIFFUCODER_CONFIGS"]))
    dirs.append(Path(__file__).resolve().parents[3] / "configs")  # src/diffucoder/config -> repo
    dirs.append(Path(sys.prefix) / "share" / "diffucoder" / "configs")
    return [d for d in dirs if d.is_dir()]


def recipe_path(preset: str, stage: str) -> Path:
    """The YAML file for ``stage`` in ``preset``; a clear error lists what exists."""
    if not preset or "/" in preset or preset.startswith("."):
        raise ConfigError(f"preset: invalid preset name {preset!r}")
    searched = config_dirs()
    for root in searched:
        path = root / preset / f"{stage}.yaml"
        if path.is_file():
            return path
    presets = sorted({p.name for root in searched for p in root.iterdir() if p.is_dir()})
    raise ConfigError(
        f"preset: no recipe '{stage}.yaml' for preset '{preset}' in "
        f"{[str(d) for d in searched] or 'no config directory (set DIFFUCODER_CONFIGS)'}; "
        f"presets found: {presets}")
