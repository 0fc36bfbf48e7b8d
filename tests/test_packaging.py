"""What the distribution promises: the library runs without Kubeflow Pipelines' SDK, and an
installed wheel (no checkout) compiles the pipeline."""
import ast
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from tests.checkout import COMPILED_DIR, ROOT

LIBRARY = ROOT / "src" / "diffucoder"

# Import every module of the library with kfp made unimportable (``sys.modules[name] = None``
# makes ``import name`` raise ImportError), as in an environment where it is not installed.
IMPORT_ALL = """
import importlib, pkgutil, sys
sys.modules["kfp"] = None
import diffucoder
names = [m.name for m in pkgutil.walk_packages(diffucoder.__path__, "diffucoder.")]
for name in names:
    importlib.import_module(name)
assert "kfp" not in [m for m in sys.modules if sys.modules[m] is not None]
print(len(names))
"""


def kfp_imports(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            lines += [node.lineno for a in node.names if a.name.split(".")[0] in ("kfp", "kfp_kubernetes")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("kfp", "kfp_kubernetes"):
            lines.append(node.lineno)
    return lines


def test_no_module_of_the_library_imports_kfp():
    offenders = {str(p.relative_to(ROOT)): lines for p in LIBRARY.rglob("*.py") if (lines := kfp_imports(p))}
    assert offenders == {}
    assert kfp_imports(ROOT / "src" / "diffucoder_kfp" / "pipeline.py"), "the scan must see kfp where it is"


def test_every_library_module_imports_without_kfp(tmp_path):
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.split()[-1]) > 100   # every module, not a handful


def test_without_kfp_the_pipeline_command_says_what_to_install(tmp_path):
    script = ("import sys; sys.modules['kfp'] = None\n"
              "from diffucoder.cli import main\nsys.exit(main(['pipeline', 'compile']))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'diffucoder[pipeline]'" in proc.stderr


@pytest.mark.integration
def test_an_installed_wheel_compiles_the_pipeline_from_an_empty_directory(tmp_path):
    """Build the wheel, install it (no dependencies: those come from this venv's site-packages,
    without the editable checkout) into a fresh venv, and compile from an empty directory."""
    source = tmp_path / "source"   # setuptools builds in place: build from a copy, not the checkout
    for name in ("pyproject.toml", "README.md", "src", "configs"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        source.mkdir(exist_ok=True)
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__", "*.egg-info")}
                                            if (ROOT / name).is_dir() else {}))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheels.glob("diffucoder-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # A path in a .pth file is added as is: the .pth files inside it (this checkout's editable
    # finder) are not run, so `diffucoder` can only come from the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import diffucoder, diffucoder_kfp; "
                            "print(diffucoder.__file__); print(diffucoder_kfp.__file__)"],
                           check=True, capture_output=True, text=True, cwd=empty).stdout.split()
    assert all(path.startswith(str(venv)) for path in where), where
    proc = subprocess.run([str(venv / "bin" / "diffucoder"), "pipeline", "compile"], capture_output=True,
                          text=True, timeout=300, cwd=empty)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (compiled,) = empty.glob("diffucoder-*.yaml")
    committed = COMPILED_DIR / compiled.name
    assert list(yaml.safe_load_all(compiled.read_text())) == list(yaml.safe_load_all(committed.read_text()))
    # the presets travel with it: a recipe resolves outside the checkout
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "from diffucoder.config.recipes import recipe_path; "
                            "print(recipe_path('7b-gpu', 'rl'))"], check=True, capture_output=True, text=True,
                           cwd=empty).stdout.strip()
    assert found.startswith(str(venv)) and found.endswith("share/diffucoder/configs/7b-gpu/rl.yaml")
