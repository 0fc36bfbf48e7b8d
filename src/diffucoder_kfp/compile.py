"""Compile the pipeline to versioned IR YAML, for the project's image registry or another one.

    diffucoder pipeline compile                          # -> ./diffucoder-<version>.yaml
    diffucoder pipeline compile --output-dir pipelines/compiled --with-revision
    diffucoder pipeline compile --image-registry registry.example.com/ml --image-pull-secret regcred
    diffucoder pipeline compile --curate-pods 64     # -> ./diffucoder-curate-pods-<version>.yaml

    docs = retarget(read_ir(path), "registry.example.com/ml", ["regcred"])   # an existing file, moved

The project commits ``pipelines/compiled/diffucoder-<version>.yaml`` (``make compile``; a
test keeps it in sync with the code), for the project's registry. ``--image-registry``
(default ``$DIFFUCODER_IMAGE_REGISTRY``) puts every step's image, and the train image the
training steps give their TrainJobs / PyTorchJobs, in another registry; ``--image-pull-secret``
gives every step's pod that docker-registry Secret. ``retarget`` does the same to a compiled
file (what ``diffucoder pipeline upload --image-registry`` and the chart's upload Job do): the
result equals compiling for that registry (a test checks it). ``--with-revision`` adds the git
revision of the checkout the package was installed from to the file name (``unknown``
outside a checkout).
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Sequence

import yaml
from google.protobuf import json_format
from kfp import compiler
from kfp.compiler.pipeline_spec_builder import to_protobuf_value
from kfp.kubernetes import kubernetes_executor_config_pb2

from diffucoder import __version__
from diffucoder.errors import DiffucoderError
from diffucoder.kube.config import DEFAULT_REGISTRY, REGISTRY_ENV
from diffucoder_kfp.components.images import check_registry, retarget_image
from diffucoder_kfp.pipeline import PIPELINE_NAME, REGISTRY_INPUT, build_pipeline

# An image the KFP driver takes from a parameter at run time (the placement step's outputs).
_PARAMETER_IMAGE = re.compile(r"^\{\{\$\.inputs\.parameters\['[^']+'\]\}\}$")


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


def compiled_filename(with_revision: bool = False, curate_pods: int = 0) -> str:
    """``diffucoder-<version>.yaml``; ``diffucoder-curate-pods-<version>.yaml`` for the pipeline
    whose curation runs over pods."""
    variant = "-curate-pods" if curate_pods else ""
    return f"{PIPELINE_NAME}{variant}-{version_name(with_revision)}.yaml"


def default_registry() -> str:
    """``$DIFFUCODER_IMAGE_REGISTRY``, else the project's registry."""
    return os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY


def compile_pipeline(output_dir: Path | str = ".", with_revision: bool = False, image_registry: str = "",
                     image_pull_secrets: Sequence[str] = (), curate_pods: int = 0) -> Path:
    """Write the compiled pipeline into ``output_dir`` (atomically); its path. ``image_registry``
    defaults to ``default_registry()``; ``curate_pods`` > 0 spreads the curation over pods, at most
    that many at once per stage (``build_pipeline``)."""
    pipeline = build_pipeline(image_registry or default_registry(), check_secret_names(image_pull_secrets),
                              curate_pods=curate_pods)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / compiled_filename(with_revision, curate_pods)
    tmp = path.with_name(f".{path.stem}.tmp.yaml")
    compiler.Compiler().compile(pipeline, str(tmp))
    tmp.replace(path)
    return path


def check_secret_names(names: Sequence[str]) -> tuple[str, ...]:
    """Image pull Secret names, each a Kubernetes object name (RFC 1123 subdomain)."""
    for name in names:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
            raise DiffucoderError(f"image pull secret {name!r}: not a Kubernetes Secret name "
                                  "(lower-case letters, digits, '-' and '.')")
    if len(set(names)) != len(names):
        raise DiffucoderError(f"image pull secrets {list(names)}: a name is given twice")
    return tuple(names)


def _pull_secret_entries(names: Sequence[str]) -> list[dict[str, Any]]:
    """What ``kfp.kubernetes.set_image_pull_secrets(task, names)`` records for an executor."""
    out = []
    for name in names:
        entry = kubernetes_executor_config_pb2.ImagePullSecret(secret_name=name)
        entry.secret_name_parameter.runtime_value.constant.CopyFrom(to_protobuf_value(name))
        out.append(json_format.MessageToDict(entry))
    return out


def _dags(ir: dict) -> list[dict]:
    return [ir["root"]["dag"], *(c["dag"] for c in ir.get("components", {}).values() if "dag" in c)]


def retarget(docs: list[dict], image_registry: str | None = None,
             image_pull_secrets: Sequence[str] | None = None) -> list[dict]:
    """A compiled pipeline (its YAML documents) moved to ``image_registry``: every step's image and
    the registry constant the placement step builds the job image from; with
    ``image_pull_secrets`` (a list, possibly empty), every step's pull Secrets replaced by those.
    ``None`` leaves that part as it is. An image that is not a project image is refused."""
    docs = copy.deepcopy(docs)
    ir = docs[0]
    if image_registry is not None:
        registry = check_registry(image_registry)
        for label, executor in ir["deploymentSpec"]["executors"].items():
            container = executor.get("container")
            if container is None:
                raise DiffucoderError(f"executor {label}: not a container step; cannot set its image")
            if not _PARAMETER_IMAGE.match(container["image"]):
                try:
                    container["image"] = retarget_image(container["image"], registry)
                except DiffucoderError as err:
                    raise DiffucoderError(f"executor {label}: {err}; refusing to move it to {registry}") from None
        constants = 0
        for dag in _dags(ir):
            for task in dag.get("tasks", {}).values():
                value = task.get("inputs", {}).get("parameters", {}).get(REGISTRY_INPUT, {})
                if "runtimeValue" in value:
                    value["runtimeValue"]["constant"] = registry
                    constants += 1
        if not constants:
            raise DiffucoderError(f"the pipeline has no task input {REGISTRY_INPUT!r}: it is not a diffucoder "
                                  "pipeline this version can move to another registry")
    if image_pull_secrets is not None:
        entries = _pull_secret_entries(check_secret_names(image_pull_secrets))
        if len(docs) < 2 and entries:
            docs.append({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}})
        if len(docs) > 1:
            executors = docs[1].setdefault("platforms", {}).setdefault("kubernetes", {}).setdefault(
                "deploymentSpec", {}).setdefault("executors", {})
            for label in ir["deploymentSpec"]["executors"]:
                config = executors.setdefault(label, {})
                if entries:
                    config["imagePullSecret"] = copy.deepcopy(entries)
                else:
                    config.pop("imagePullSecret", None)
                    if not config:
                        del executors[label]
    return docs


def read_ir(path: Path | str) -> list[dict]:
    """The YAML documents of a compiled pipeline file."""
    return list(yaml.safe_load_all(Path(path).read_text()))


def dump_ir(docs: list[dict]) -> str:
    """YAML of a compiled pipeline, as kfp's compiler writes it (documents separated, keys sorted)."""
    return "---\n".join(yaml.safe_dump(doc, sort_keys=True) for doc in docs)
