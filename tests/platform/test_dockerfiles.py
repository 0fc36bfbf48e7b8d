"""images/: every image the components use has a linted Dockerfile and is built and tagged."""
import importlib
import os
import re
import subprocess

import pytest
import yaml
from platform_support import ROOT, tool
from dockerfile_rules import instructions, rule_violations

from diffucoder_kfp.components.images import ALL_IMAGES
from diffucoder import __version__
from tests.checkout import COMPILED_DIR

IMAGES_DIR = ROOT / "images"
DOCKERFILES = {name: IMAGES_DIR / name / "Dockerfile" for name in ALL_IMAGES}


def pinned(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def test_every_component_image_has_a_dockerfile_and_ignore_file():
    assert set(ALL_IMAGES) == {"base", "train", "serve"}
    for name, path in DOCKERFILES.items():
        assert path.is_file(), f"components/images.py names {name} but {path} is missing"
        ignore = [line.strip() for line in
                  path.with_name("Dockerfile.dockerignore").read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
        assert ignore[0] == "*", f"{path}: the build context must be an allow-list"
        copied = [a.split()[:-1] for k, a in instructions(path.read_text()) if k == "COPY"]
        for source in (s.rstrip("/") for srcs in copied for s in srcs if not s.startswith("--")):
            assert f"!{source}" in ignore or f"!{source}/" in ignore, \
                f"{path}: COPY {source} is excluded by its .dockerignore"


def component_images() -> dict[str, str]:
    """component name -> image, for every kfp component in diffucoder_kfp/components/<stage>/."""
    from kfp.dsl.base_component import BaseComponent

    images = {}
    components = ROOT / "src" / "diffucoder_kfp" / "components"
    for package in sorted(p.parent.name for p in components.glob("*/__init__.py")):
        module = importlib.import_module(f"diffucoder_kfp.components.{package}")
        for name, obj in vars(module).items():
            if isinstance(obj, BaseComponent):
                images[name] = obj.component_spec.implementation.container.image
    return images


def test_every_component_and_compiled_step_runs_a_project_image():
    images = component_images()
    assert images, "no kfp components found under components/"
    unknown = {n: i for n, i in images.items() if i not in ALL_IMAGES.values()}
    assert unknown == {}, "components must use an image from components/images.py"
    for compiled in COMPILED_DIR.glob("*.yaml"):
        executors = next(yaml.safe_load_all(compiled.read_text()))["deploymentSpec"]["executors"]
        used = {e["container"]["image"] for e in executors.values() if "container" in e}
        assert used <= set(ALL_IMAGES.values()), (compiled.name, used)


def test_hadolint_passes_on_every_dockerfile():
    result = subprocess.run([tool("hadolint"), "--config", str(IMAGES_DIR / ".hadolint.yaml"),
                             *map(str, DOCKERFILES.values())], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(ALL_IMAGES))
def test_dockerfile_follows_the_project_rules(name):
    assert rule_violations(DOCKERFILES[name].read_text()) == []


def test_rule_checker_catches_the_mistakes_it_is_for():
    bad = """\
FROM python:latest
FROM ubuntu
ARG GITHUB_TOKEN
ENV AWS_SECRET_ACCESS_KEY=abc
RUN apt-get update && apt-get install -y git
RUN pip install -e ".[all]"
USER diffucoder
"""
    problems = "\n".join(rule_violations(bad))
    for expected in ("python:latest", "FROM ubuntu: no tag", "GITHUB_TOKEN",
                     "AWS_SECRET_ACCESS_KEY", "--no-install-recommends", "apt lists",
                     "--no-cache-dir", "-c constraints.txt", "numeric non-root"):
        assert expected in problems, expected


def test_pins_match_constraints_and_images_do_their_jobs():
    texts = {name: path.read_text() for name, path in DOCKERFILES.items()}
    for name, text in texts.items():
        assert f"ARG TORCH_VERSION={pinned('torch')}" in text, name
        assert "COPY configs /opt/diffucoder/configs" in text, name
        assert "DIFFUCODER_CONFIGS=/opt/diffucoder/configs" in text, name
        assert "USER 10001:10001" in text and "--uid 10001" in text, name
    assert f"ARG DEEPSPEED_VERSION={pinned('deepspeed')}" in texts["train"]
    assert "download.pytorch.org/whl/cpu" in texts["base"]
    assert re.search(r"apt-get install[^&]*\bbubblewrap\b", texts["base"])
    assert 'EXPOSE 8080' in texts["serve"]
    assert 'CMD ["diffucoder", "serve", "--model", "/mnt/models", "--port", "8080"]' \
        in texts["serve"]
    # The ServingRuntime's args are the whole command: an ENTRYPOINT would be prepended.
    assert "ENTRYPOINT" not in {k for k, _ in instructions(texts["serve"])}


@pytest.mark.parametrize("registry", [None, "registry.example.com/team"])
def test_build_script_tags_exactly_the_component_images(registry):
    env = dict(os.environ)
    env.pop("DIFFUCODER_IMAGE_REGISTRY", None)
    if registry:
        env["DIFFUCODER_IMAGE_REGISTRY"] = registry
    result = subprocess.run(["bash", str(IMAGES_DIR / "build.sh"), "--dry-run", "--push"],
                            env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    tags = re.findall(r"--tag (\S+)", result.stdout)
    pushed = re.findall(r"push (\S+)", result.stdout)
    prefix = registry or "ghcr.io/diffucoder-platform"
    expected = [f"{prefix}/diffucoder-{n}:{__version__}" for n in ("base", "train", "serve")]
    assert tags == pushed == expected
    if not registry:
        assert sorted(tags) == sorted(ALL_IMAGES.values())
    for name in ALL_IMAGES:
        assert f"--file {IMAGES_DIR / name / 'Dockerfile'}" in result.stdout


def test_build_script_rejects_unknown_images():
    result = subprocess.run(["bash", str(IMAGES_DIR / "build.sh"), "--dry-run", "gpu"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown argument 'gpu'" in result.stderr
