"""Plain-dict Kubernetes object helpers shared by the renderers, the launcher and deploy.

    check_name("pretrain-r1", "job name")          # RFC 1035 label, or a DiffucoderError
    safe_name("diffucoder", run, "pretrain")        # a valid name from free text (hashed if long)
    stamped = stamp(obj)                             # + annotation diffucoder.io/spec-sha256
    patch = merge_patch(live["spec"], wanted["spec"])   # RFC 7386 (what CRDs accept)
    write_manifest("out/job.yaml", [obj])            # atomic multi-document YAML

Objects are plain dicts (what ``kubectl apply -f`` reads), so rendering needs no cluster
and no Kubernetes client; the client is used only by ``launcher`` and ``deploy``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable

import yaml

from diffucoder.errors import DiffucoderError

ANNOTATION_PREFIX = "diffucoder.io/"
SPEC_HASH = ANNOTATION_PREFIX + "spec-sha256"      # what the launcher/deploy last applied
APPLIED_SPEC = ANNOTATION_PREFIX + "applied-spec"  # the applied spec itself (3-way patches)
RUN_ID = ANNOTATION_PREFIX + "run-id"              # the pipeline run that created a job
MANAGED_BY = "diffucoder"

_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_name(name: str, what: str = "name", max_len: int = 63) -> str:
    """``name`` if it is an RFC 1035 label of at most ``max_len`` characters."""
    if not isinstance(name, str) or not _RFC1035.match(name) or len(name) > max_len:
        raise DiffucoderError(
            f"{what}: {name!r} is not a valid Kubernetes name (lowercase letters, digits and '-', "
            f"starting with a letter, ending with a letter or digit, at most {max_len} characters)")
    return name


def check_subdomain(name: str, what: str) -> str:
    """``name`` if it is an RFC 1123 subdomain (namespaces' rules are stricter: use check_name)."""
    if not isinstance(name, str) or not _RFC1123.match(name) or len(name) > 253:
        raise DiffucoderError(f"{what}: {name!r} is not a valid Kubernetes object name")
    return name


def safe_name(*parts: str, max_len: int = 40) -> str:
    """A valid name built from free text; a short hash keeps long or lossy names distinct."""
    raw = "-".join(str(p) for p in parts if p)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "x-" + name
    if name != raw or len(name) > max_len:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:6]
        name = f"{name[:max_len - 7].rstrip('-')}-{digest}"
    return check_name(name, "generated name", max_len)


def label_value(text: str) -> str:
    """``text`` made into a label value (<= 63 of ``[A-Za-z0-9_.-]``, alphanumeric ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text))[:63].strip("-_.")


def common_labels(component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The app.kubernetes.io labels the chart uses, plus ``extra`` (values checked)."""
    labels = {"app.kubernetes.io/name": "diffucoder", "app.kubernetes.io/part-of": "diffucoder",
              "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": MANAGED_BY}
    for key, value in (extra or {}).items():
        if not isinstance(value, str) or not _LABEL_VALUE.match(value) or len(value) > 63:
            raise DiffucoderError(f"label {key}: {value!r} is not a valid label value")
        labels[key] = value
    return labels


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def spec_hash(obj: dict) -> str:
    """sha256 of the object's canonical ``spec`` (what 'the same job' means on retry)."""
    return hashlib.sha256(canonical_json(obj.get("spec", {})).encode()).hexdigest()


def annotations(obj: dict) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def stamp(obj: dict, keep_spec: bool = False) -> dict:
    """A copy of ``obj`` annotated with its spec hash (and the spec itself if ``keep_spec``)."""
    out = copy.deepcopy(obj)
    notes = out.setdefault("metadata", {}).setdefault("annotations", {})
    notes[SPEC_HASH] = spec_hash(obj)
    if keep_spec:
        notes[APPLIED_SPEC] = canonical_json(obj.get("spec", {}))
    return out


def applied_spec(obj: dict) -> dict | None:
    """The spec recorded by ``stamp(keep_spec=True)``, or None."""
    raw = annotations(obj).get(APPLIED_SPEC)
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError:
        return None
    return spec if isinstance(spec, dict) else None


def merge_patch(source: Any, target: Any) -> Any:
    """The RFC 7386 JSON merge patch turning ``source`` into ``target`` (lists are replaced)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return copy.deepcopy(target)
    patch: dict[str, Any] = {key: None for key in source if key not in target}
    for key, value in target.items():
        if key not in source:
            patch[key] = copy.deepcopy(value)
        elif source[key] != value:
            patch[key] = merge_patch(source[key], value) \
                if isinstance(source[key], dict) and isinstance(value, dict) else copy.deepcopy(value)
    return patch


def describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def to_yaml(objs: Iterable[dict]) -> str:
    return yaml.safe_dump_all(list(objs), sort_keys=False, default_flow_style=False)


def write_manifest(path: str | os.PathLike, objs: Iterable[dict], header: str = "") -> Path:
    """Write the objects as multi-document YAML, atomically (temp file + rename); ``header``
    becomes a leading comment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = list(objs)
    text = (f"# {header}\n" if header else "") + (to_yaml(objs) if objs else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
