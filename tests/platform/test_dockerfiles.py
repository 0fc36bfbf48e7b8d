"""images/: every image the pipeline steps use has a linted Dockerfile that installs exactly its
pinned requirements file (images/<name>/requirements.txt), and is built and tagged by
images/build.sh; images/minio builds the chart's MinIO from the pinned release's source. That the
steps run in what their image installs: test_step_contracts.py."""
import importlib
import json
import os
import re
import subprocess

import pytest
import yaml
from platform_support import ROOT, tool
from dockerfile_rules import instructions, rule_violations

from contract_envs import image_names
from diffucoder import __version__
from diffucoder.kube.config import image_ref
from diffucoder_kfp.components.images import STEP_IMAGES
from tests.checkout import COMPILED_DIR

IMAGES_DIR = ROOT / "images"
ALL_IMAGES = {name: image_ref(name) for name in image_names()}   # the Python images: images/<name>/Dockerfile
DOCKERFILES = {name: IMAGES_DIR / name / "Dockerfile" for name in ALL_IMAGES}
MINIO_DOCKERFILE = IMAGES_DIR / "minio" / "Dockerfile"
# MinIO's fix of GHSA-jjjj-jwhf-8rgr, and the commit its tag points at in github.com/minio/minio.
MINIO_RELEASE = "RELEASE.2025-10-15T17-29-55Z"
MINIO_COMMIT = "9e49d5e7a648f00e26f2246f4dc28e6b07f8c84a"
TORCH_INDEX = {"base": "https://download.pytorch.org/whl/cpu", "train": "https://download.pytorch.org/whl/cu128",
               "serve": "https://download.pytorch.org/whl/cu128"}


def pinned(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip().lower() == package:
            return version.strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def test_every_image_has_a_dockerfile_and_ignore_file():
    assert set(ALL_IMAGES) == {"base", "train", "serve"}
    for name, path in {**DOCKERFILES, "minio": MINIO_DOCKERFILE}.items():
        ignore = [line.strip() for line in
                  path.with_name("Dockerfile.dockerignore").read_text().splitlines()
                  if line.strip() and not line.startswith("#")]
        assert ignore[0] == "*", f"{path}: the build context must be an allow-list"
        copied = [a.split()[:-1] for k, a in instructions(path.read_text()) if k == "COPY" and "--from=" not in a]
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
    assert images, "no kfp components found under src/diffucoder_kfp/components/"
    unknown = {n: i for n, i in images.items() if i not in ALL_IMAGES.values()}
    assert unknown == {}, "components must use an image of images/<name> (diffucoder.kube.config.image_ref)"
    compiled = sorted(COMPILED_DIR.glob("*.yaml"))
    assert compiled, f"no compiled pipeline in {COMPILED_DIR}"
    chosen = {image_ref(name) for name in STEP_IMAGES}   # what the placement step can choose
    assert chosen <= set(ALL_IMAGES.values())
    for path in compiled:
        executors = next(yaml.safe_load_all(path.read_text()))["deploymentSpec"]["executors"]
        used = {e["container"]["image"] for e in executors.values() if "container" in e}
        fixed = {i for i in used if not i.startswith("{{$.inputs.parameters['pipelinechannel--placement-")}
        assert fixed and fixed <= set(ALL_IMAGES.values()), (path.name, used)


def test_hadolint_passes_on_every_dockerfile():
    result = subprocess.run([tool("hadolint"), "--config", str(IMAGES_DIR / ".hadolint.yaml"),
                             *map(str, DOCKERFILES.values()), str(MINIO_DOCKERFILE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", [*sorted(ALL_IMAGES), "minio"])
def test_dockerfile_follows_the_project_rules(name):
    assert rule_violations((IMAGES_DIR / name / "Dockerfile").read_text()) == []


def test_minio_is_built_from_the_pinned_release_into_a_minimal_non_root_image():
    """MinIO published the release fixing GHSA-jjjj-jwhf-8rgr as source only: the builder fetches
    that tag, refuses any commit but the pinned one, builds a static binary (CGO off, MinIO's own
    ldflags script), and the final image is scratch + the binary + CA certificates + uid 10001."""
    steps = instructions(MINIO_DOCKERFILE.read_text())
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms[0].startswith("golang:1.24.8-") and froms[0].endswith(" AS build") and froms[-1] == "scratch"
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert args["MINIO_SOURCE_TAG"] == MINIO_RELEASE and args["MINIO_SOURCE_COMMIT"] == MINIO_COMMIT
    (build,) = [a for k, a in steps if k == "RUN"]
    for part in ('git fetch -q --depth 1 origin "refs/tags/${MINIO_SOURCE_TAG}"',
                 'test "$(git rev-parse HEAD)" = "${MINIO_SOURCE_COMMIT}"', "go build -tags kqueue -trimpath",
                 "buildscripts/gen-ldflags.go", 'grep -F "${MINIO_SOURCE_TAG}"', "chmod 1777 /rootfs/tmp"):
        assert part in build, part
    assert [a.split() for k, a in steps if k == "ENV"][0] == ["CGO_ENABLED=0", "GOTOOLCHAIN=local"]
    assert ("USER", "10001:10001") in steps and ("ENTRYPOINT", '["/usr/bin/minio"]') in steps
    final = steps[[i for i, (k, _) in enumerate(steps) if k == "FROM"][-1]:]
    assert [a for k, a in final if k == "COPY"] == ["--from=build /rootfs/ /"]   # nothing else reaches it
    chart = yaml.safe_load((ROOT / "charts" / "diffucoder" / "values.yaml").read_text())["minio"]["image"]
    assert chart["tag"] == MINIO_RELEASE and chart["repository"] == ""   # = <images.registry>/diffucoder-minio


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
    assert re.search(r"apt-get install[^&]*\bbubblewrap\b", texts["base"])
    assert re.search(r"apt-get install[^&]*\bbubblewrap\b", texts["train"])  # evaluate on GPU presets
    assert 'EXPOSE 8080' in texts["serve"]
    assert 'CMD ["diffucoder", "serve", "--model", "/mnt/models", "--port", "8080"]' \
        in texts["serve"]
    # The ServingRuntime's args are the whole command: an ENTRYPOINT would be prepended.
    assert "ENTRYPOINT" not in {k for k, _ in instructions(texts["serve"])}


@pytest.mark.parametrize("name", sorted(ALL_IMAGES))
def test_dockerfile_installs_exactly_its_requirements_file(name):
    """torch from the image's index, then images/<name>/requirements.txt with --no-deps (every
    package at its constraints pin), then the project with --no-deps, then pip check: the
    install the step contract tests reproduce (tests/platform/contract_envs.py)."""
    steps = instructions(DOCKERFILES[name].read_text())
    assert ("ARG", f"TORCH_INDEX_URL={TORCH_INDEX[name]}") in steps
    assert ("COPY", f"images/{name}/requirements.txt ./requirements.txt") in steps
    runs = [args for keyword, args in steps if keyword == "RUN" and "pip " in args]
    commands = [c.strip() for args in runs for c in args.split("&&")]
    assert [c for c in commands if c.startswith("pip ")] == [
        'pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"',
        "pip install --no-cache-dir --no-deps -r requirements.txt",
        "pip install --no-cache-dir --no-deps .",
        "pip check",
    ]
    order = [keyword + " " + args for keyword, args in steps]
    requirements = next(i for i, s in enumerate(order) if "--no-deps -r requirements.txt" in s)
    assert requirements < next(i for i, s in enumerate(order) if s == "COPY src ./src"), \
        "the pinned install is a layer of its own, before the sources"


def test_gpu_images_build_no_cuda_code():
    """The train image is a CUDA runtime, not a toolkit: torch's cu128 wheels bring the CUDA
    libraries and nothing is compiled, because DeepSpeed builds no op at install (DS_BUILD_OPS=0)
    and the DeepSpeed configs use no op that DeepSpeed would JIT-compile at run time."""
    train = DOCKERFILES["train"].read_text()
    (base,) = [args for keyword, args in instructions(train) if keyword == "FROM"]
    assert base.startswith("python:3.11") and "devel" not in train and "nvcc" not in train
    for path in [*DOCKERFILES.values(), MINIO_DOCKERFILE]:   # no image of the project starts from a toolkit
        assert not [a for k, a in instructions(path.read_text()) if k == "FROM" and "cuda" in a], path
    assert "DS_BUILD_OPS=0" in train and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in train
    configs = sorted((ROOT / "configs" / "deepspeed").glob("*.json"))
    assert configs
    for path in configs:
        assert compiled_ops(json.loads(path.read_text())) == [], path.name


def compiled_ops(config: dict) -> list[str]:
    """DeepSpeed features of a config that load a C++/CUDA op (built with nvcc or a C++ compiler
    on first use when DS_BUILD_OPS=0): fused/CPU Adam, ZeRO offload (cpu_adam, async I/O),
    quantized ZeRO++ weights/gradients, fp16 fused optimizers, sparse attention."""
    found = []
    optimizer = config.get("optimizer", {})
    if str(optimizer.get("type", "")).lower() in ("adam", "adamw") and \
            not optimizer.get("params", {}).get("torch_adam", False):
        found.append("optimizer: FusedAdam (set params.torch_adam: true)")
    if str(optimizer.get("type", "")).lower() in ("lamb", "onebitadam", "zerooneadam", "onebitlamb"):
        found.append(f"optimizer {optimizer['type']}")
    zero = config.get("zero_optimization", {})
    for key in ("offload_optimizer", "offload_param"):
        if zero.get(key, {}).get("device", "none") not in ("none", None):
            found.append(f"zero_optimization.{key}")
    for key in ("zero_quantized_weights", "zero_quantized_gradients", "zero_quantized_nontrainable_weights"):
        if zero.get(key):
            found.append(f"zero_optimization.{key}")
    if config.get("sparse_attention"):
        found.append("sparse_attention")
    if config.get("aio") or config.get("nvme_path"):
        found.append("aio")
    return found


def test_compiled_ops_finds_the_features_that_need_a_compiler():
    assert compiled_ops({"optimizer": {"type": "AdamW", "params": {"torch_adam": True}}}) == []
    assert compiled_ops({"optimizer": {"type": "AdamW"}}) == ["optimizer: FusedAdam (set params.torch_adam: true)"]
    assert compiled_ops({"zero_optimization": {"offload_optimizer": {"device": "cpu"},
                                               "zero_quantized_weights": True}}) == [
        "zero_optimization.offload_optimizer", "zero_optimization.zero_quantized_weights"]


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
    assert tags == pushed == [*expected, f"{prefix}/diffucoder-minio:{MINIO_RELEASE}"]
    if not registry:
        assert sorted(tags[:3]) == sorted(ALL_IMAGES.values())
    for name in [*ALL_IMAGES, "minio"]:
        assert f"--file {IMAGES_DIR / name / 'Dockerfile'}" in result.stdout


def test_build_script_rejects_unknown_images():
    result = subprocess.run(["bash", str(IMAGES_DIR / "build.sh"), "--dry-run", "gpu"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown argument 'gpu'" in result.stderr
