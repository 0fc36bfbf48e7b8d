"""Container images the components run in (built from ``images/``, tagged with the version).

    image_ref("train", "registry.example.com/ml")   # registry.example.com/ml/diffucoder-train:<version>
    retarget_image("ghcr.io/diffucoder-platform/diffucoder-base:0.1.0", "registry.example.com/ml")

The components are declared with the project's default registry; the pipeline gives every task
the image of the registry it is compiled for (``diffucoder pipeline compile --image-registry``,
``diffucoder_kfp.pipeline.build_pipeline``), and ``diffucoder_kfp.compile.retarget`` moves an
already compiled pipeline to another registry. One definition (``diffucoder.kube.image_ref``)
names the images for the components, the cluster jobs and ``images/build.sh``.
"""
from __future__ import annotations

import re

from diffucoder.errors import DiffucoderError
from diffucoder.kube.config import DEFAULT_REGISTRY, image_ref

STEP_IMAGES = ("base", "train")   # what pipeline steps run on (serve: the ServingRuntime's)
PROJECT_IMAGES = ("base", "train", "serve")

BASE_IMAGE = image_ref("base", DEFAULT_REGISTRY)    # CPU: curate, deploy, the launchers, placement
TRAIN_IMAGE = image_ref("train", DEFAULT_REGISTRY)  # CUDA + DeepSpeed: model-holding steps, TrainJob pods
SERVE_IMAGE = image_ref("serve", DEFAULT_REGISTRY)  # KServe model server

ALL_IMAGES = {"base": BASE_IMAGE, "train": TRAIN_IMAGE, "serve": SERVE_IMAGE}

_PROJECT_REF = re.compile(r"^(?P<registry>[^\s:@]+(?::\d+)?(?:/[^\s:@]+)*)/diffucoder-(?P<name>[a-z0-9]+)"
                          r":(?P<tag>[\w.+-]+)$")


def check_registry(registry: str) -> str:
    """``registry`` without a trailing slash; an error naming it when it cannot prefix an image."""
    cleaned = registry.strip().rstrip("/")
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*", cleaned):
        raise DiffucoderError(f"image registry {registry!r}: expected a host with an optional port and path, "
                              "e.g. registry.example.com/ml (no scheme, no tag)")
    return cleaned


def image_name(ref: str) -> str:
    """``<registry>/diffucoder-<name>:<tag>`` -> ``name``; an error for any other image."""
    match = _PROJECT_REF.match(ref)
    if not match or match["name"] not in PROJECT_IMAGES:
        raise DiffucoderError(f"image {ref!r} is not one of the project's images "
                              f"(<registry>/diffucoder-{{{','.join(PROJECT_IMAGES)}}}:<tag>)")
    return match["name"]


def retarget_image(ref: str, registry: str) -> str:
    """The same project image (name and tag) in ``registry``."""
    match = _PROJECT_REF.match(ref)
    image_name(ref)
    return f"{check_registry(registry)}/diffucoder-{match['name']}:{match['tag']}"


__all__ = ["ALL_IMAGES", "BASE_IMAGE", "PROJECT_IMAGES", "SERVE_IMAGE", "STEP_IMAGES", "TRAIN_IMAGE",
           "check_registry", "image_name", "image_ref", "retarget_image"]
