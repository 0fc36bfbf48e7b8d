"""Paths of the project checkout that tests read: committed files, not package data."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPILED_DIR = ROOT / "pipelines" / "compiled"   # the committed compiled pipeline (make compile)
