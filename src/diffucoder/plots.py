"""Writing figures the way every report does: headless backend, atomic file, figure closed.

    plt = pyplot()
    fig, ax = plt.subplots()
    ...
    save_figure(fig, Path("out/loss_curve.png"))   # temp file + rename: a reader never sees half a PNG
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display on servers and in pods). The backend
    is chosen here, when a report draws, not at import: importing this module changes nothing."""
    matplotlib.use("Agg")
    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Lay out, write atomically and close ``fig``; the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi)
    pyplot().close(fig)
    os.replace(tmp, path)
    return path
