"""Pod building blocks: non-root security, resources, store credentials, scratch volumes.

    pod_security_context(10001)        # runAsNonRoot, uid/gid/fsGroup, seccomp RuntimeDefault
    container_security_context(10001)  # + read-only root, no privilege escalation, no capabilities
    resources(cpu="8", memory="64Gi", gpus=8)   # requests == limits (Guaranteed QoS)
    s3_env("diffucoder-s3")            # the store's settings and keys, by reference to the Secret

They match what the chart's templates give its own pods (``charts/diffucoder/templates/
_helpers.tpl``): the images run as uid/gid 10001, writable paths are emptyDir mounts, and
credentials are never written into an object, only referenced from the Secret.
"""
from __future__ import annotations

import re
from typing import Any

from diffucoder.errors import DiffucoderError

RUN_AS = 10001
GPU_RESOURCE = "nvidia.com/gpu"
# The keys of the chart's Secret `diffucoder-s3` (see charts/diffucoder/values.yaml, `s3:`),
# read by diffucoder.store.s3_config.
S3_SECRET_KEYS = ("DIFFUCODER_S3_ENDPOINT", "DIFFUCODER_S3_SECURE", "DIFFUCODER_S3_REGION",
                  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Writable locations for a read-only root filesystem (HOME and caches go to /tmp).
SCRATCH_ENV = {"HOME": "/tmp", "HF_HOME": "/tmp/hf", "TRITON_CACHE_DIR": "/tmp/triton",
               "PYTHONUNBUFFERED": "1"}
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")


def check_quantity(value: str, what: str) -> str:
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise DiffucoderError(f"{what}: {value!r} is not a Kubernetes quantity (e.g. '8', '500m', "
                              "'64Gi')")
    return value


def pod_security_context(uid: int = RUN_AS) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context(uid: int = RUN_AS) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
            "allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def resources(cpu: str, memory: str, gpus: int = 0) -> dict[str, dict[str, Any]]:
    """Requests equal to limits: training and serving pods should not be overcommitted."""
    check_quantity(cpu, "cpu")
    check_quantity(memory, "memory")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise DiffucoderError(f"gpus: must be an integer >= 0, got {gpus!r}")
    amounts: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[GPU_RESOURCE] = gpus  # extended resources: request must equal limit
    return {"requests": dict(amounts), "limits": dict(amounts)}


def s3_env(secret: str) -> list[dict[str, Any]]:
    """Env entries taking every store setting and key from ``secret`` (no value inline)."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in S3_SECRET_KEYS]


def plain_env(values: dict[str, str]) -> list[dict[str, str]]:
    for key, value in values.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key) or not isinstance(value, str):
            raise DiffucoderError(f"env: {key}={value!r}: names are identifiers, values strings")
    return [{"name": key, "value": value} for key, value in values.items()]


def scratch_volumes(shm_size: str, tmp_size: str = "20Gi") -> tuple[list[dict], list[dict]]:
    """(volumes, mounts): an in-memory /dev/shm (data loaders, NCCL) and a writable /tmp."""
    check_quantity(shm_size, "shm_size")
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
               {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts


def pvc_volume(name: str, claim: str, mount_path: str) -> tuple[dict, dict]:
    """(volume, mount) for a shared PersistentVolumeClaim (ReadWriteMany across nodes)."""
    if not mount_path.startswith("/") or mount_path in ("/", "/tmp", "/dev/shm"):
        raise DiffucoderError(f"mount path {mount_path!r}: must be an absolute path of its own")
    return ({"name": name, "persistentVolumeClaim": {"claimName": claim}},
            {"name": name, "mountPath": mount_path})


def check_tolerations(tolerations: list[dict]) -> list[dict]:
    for i, tol in enumerate(tolerations):
        if not isinstance(tol, dict) or not set(tol) <= TOLERATION_KEYS:
            raise DiffucoderError(f"tolerations[{i}]: {tol!r}: keys must be among "
                                  f"{sorted(TOLERATION_KEYS)}")
        if tol.get("operator", "Equal") not in ("Equal", "Exists"):
            raise DiffucoderError(f"tolerations[{i}]: operator must be Equal or Exists")
        if tol.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise DiffucoderError(f"tolerations[{i}]: effect {tol.get('effect')!r} is unknown")
    return [dict(t) for t in tolerations]


def check_node_selector(selector: dict[str, str]) -> dict[str, str]:
    for key, value in selector.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise DiffucoderError(f"node_selector: {key!r}: {value!r}: keys and values are strings")
    return dict(selector)
