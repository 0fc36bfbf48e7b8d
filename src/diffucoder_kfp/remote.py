"""Upload the compiled pipeline to a Kubeflow Pipelines server and start runs (``kfp.Client``).

    diffucoder pipeline upload --host http://127.0.0.1:8888 --file pipelines/compiled/diffucoder-0.1.0.yaml
    diffucoder pipeline upload --host http://127.0.0.1:8888 --file ... --namespace ml-team --token-file kfp-token \\
        --image-registry registry.example.com/ml --image-pull-secret regcred
    diffucoder pipeline submit --host ... --file ... --run-name r1 --service-account diffucoder-pipeline-runner \\
        --param preset=7b-gpu --param store_root=s3://diffucoder

Both KFP modes: standalone (no ``--namespace``: a shared pipeline, runs in KFP's namespace) and
multi-user Kubeflow (``--namespace <profile>``: the pipeline is uploaded into the profile's
namespace, where the user may write, and runs go to an experiment there; KFP 2.17 authorizes
writes to shared pipelines in the KFP system namespace, which users may not write). Identity:
a bearer token read from ``--token-file`` (or ``$KF_PIPELINES_SA_TOKEN_PATH``, kfp's
convention for a projected ServiceAccount token, audience ``pipelines.kubeflow.org``) and/or a
session cookie read from ``--cookie-file`` (``name=value``, e.g. the ``oauth2_proxy_kubeflow``
cookie of a browser session through Kubeflow's Istio ingress); never from the command line.

Versions are idempotent by content: the version is named after the file
(``diffucoder-<version>[+g<rev>].yaml`` -> ``<version>[+g<rev>]``) plus the first 12 hex
digits of the sha256 of the pipeline as uploaded (``0.1.0-3fa2c9d1e0b7``), and its description
records the whole digest. Uploading the same content again is a no-op (the chart's upload Job
reruns on every ``helm upgrade``); changed content under the same file name gets a new version.
An explicit ``--version-name`` that exists with other content is an error. ``--image-registry``
/ ``--image-pull-secret`` move the file's images before upload (``compile.retarget``). Works
without a project checkout: only the compiled file is needed (the images ship it).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import kfp
import yaml
from kfp_server_api.exceptions import ApiException

from diffucoder.errors import DiffucoderError
from diffucoder_kfp.compile import dump_ir, retarget

TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp's own convention for a projected SA token
DIGEST_MARK = "sha256:"


@dataclass
class Uploaded:
    pipeline_id: str
    version_id: str
    version_name: str
    digest: str
    created: bool


def read_pipeline_docs(path: str | os.PathLike) -> list[dict]:
    """Load and sanity-check a compiled pipeline (IR YAML): the pipeline spec first, then (if
    any) the platform spec carrying the kfp-kubernetes settings."""
    path = Path(path)
    if not path.is_file():
        raise DiffucoderError(f"--file: {path} does not exist (run `diffucoder pipeline compile`)")
    try:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except yaml.YAMLError as err:
        raise DiffucoderError(f"--file: {path} is not YAML: {err}") from None
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise DiffucoderError(f"--file: {path} is not a compiled kfp pipeline (no pipelineInfo/root)")
    return docs


def read_pipeline_file(path: str | os.PathLike) -> dict:
    """The pipeline spec of a compiled pipeline file."""
    return read_pipeline_docs(path)[0]


def content_digest(docs: list[dict]) -> str:
    """sha256 of the pipeline's content, independent of YAML formatting and key order."""
    canonical = json.dumps(docs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_from_filename(path: str | os.PathLike, pipeline_name: str) -> str:
    stem = Path(path).name.removesuffix(".yaml")
    prefix = f"{pipeline_name}-"
    if not stem.startswith(prefix) or stem == prefix:
        raise DiffucoderError(f"--file: cannot read a version from {Path(path).name!r}; expected "
                              f"{prefix}<version>.yaml or pass --version-name")
    return stem[len(prefix):]


def _read_secret_file(path: str, option: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as err:
        raise DiffucoderError(f"{option}: cannot read {path}: {err}") from None
    if not value or "\n" in value:
        raise DiffucoderError(f"{option}: {path} must hold one line (got {'nothing' if not value else 'several'})")
    return value


def make_client(host: str, namespace: str | None = None, token_file: str | None = None,
                cookie_file: str | None = None):
    """A ``kfp.Client`` for ``host``; the token and the cookie come from files, never the command line.
    ``namespace``: the profile namespace of multi-user Kubeflow (experiments and runs go there)."""
    token = cookie = None
    token_file = token_file or os.environ.get(TOKEN_ENV)
    if token_file:
        token = _read_secret_file(token_file, "--token-file")
    if cookie_file:
        cookie = _read_secret_file(cookie_file, "--cookie-file")
        if not re.fullmatch(r"[^=;\s]+=[^;]*(;\s*[^=;\s]+=[^;]*)*", cookie):
            raise DiffucoderError(f"--cookie-file: {cookie_file} must hold name=value pairs separated by '; ' "
                                  "(the Cookie header of a logged-in browser session)")
    try:
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token, cookies=cookie)
    except Exception as err:  # connection refused, bad TLS, ...: say which host
        raise DiffucoderError(f"--host: cannot reach Kubeflow Pipelines at {host}: {err}") from None


@contextlib.contextmanager
def api_errors(what: str, namespace: str | None) -> Iterator[None]:
    """The KFP API's refusals as errors that say what to change (multi-user identity and namespace)."""
    try:
        yield
    except ApiException as err:
        body = (err.body or "").strip() if isinstance(err.body, str) else str(err.body or "")
        where = f"namespace {namespace!r}" if namespace else "the shared namespace (no --namespace)"
        if err.status == 401 or "no user identity" in body:
            raise DiffucoderError(
                f"{what}: Kubeflow Pipelines saw no identity (HTTP {err.status}): multi-user Kubeflow needs "
                "--token-file (e.g. `kubectl -n <profile> create token default-editor --audience "
                "pipelines.kubeflow.org`) or --cookie-file (a logged-in session through the Kubeflow ingress)"
            ) from None
        if err.status == 403 or (err.status == 400 and re.search(r"(?i)authoriz|permission", body)):
            raise DiffucoderError(
                f"{what}: not allowed in {where} (HTTP {err.status}: {body[:300]}); in multi-user Kubeflow pass "
                "--namespace <your profile namespace> with an identity that may edit it"
            ) from None
        raise DiffucoderError(f"{what}: Kubeflow Pipelines answered HTTP {err.status} {err.reason}: "
                              f"{body[:500]}") from None


def _equals_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _find_pipeline(client, name: str, namespace: str | None) -> str | None:
    """The id of the pipeline named ``name`` in ``namespace`` (None: the shared ones)."""
    found = client.list_pipelines(filter=_equals_filter("display_name", name), namespace=namespace,
                                  page_size=2).pipelines or []
    if len(found) > 1:
        raise DiffucoderError(f"{len(found)} pipelines are named {name!r} in "
                              f"{namespace or 'the shared namespace'}: delete the extra ones")
    return found[0].pipeline_id if found else None


def _recorded_digest(description: str | None) -> str:
    match = re.search(rf"{DIGEST_MARK}([0-9a-f]{{64}})", description or "")
    return match[1] if match else ""


def upload(client, file: str | os.PathLike, version_name: str | None = None, description: str | None = None,
           namespace: str | None = None, image_registry: str | None = None,
           image_pull_secrets: Sequence[str] | None = None) -> Uploaded:
    """Create the pipeline if missing (in ``namespace``, or shared), then the version of this content
    if missing. ``image_registry`` / ``image_pull_secrets``: move the file's images first."""
    docs = read_pipeline_docs(file)
    if image_registry is not None or image_pull_secrets is not None:
        docs = retarget(docs, image_registry, image_pull_secrets)
    spec = docs[0]
    name = spec["pipelineInfo"]["name"]
    digest = content_digest(docs)
    explicit = version_name is not None
    version_name = version_name or f"{version_from_filename(file, name)}-{digest[:12]}"
    description = description or spec["pipelineInfo"].get("description", "")
    version_description = f"{description} [{DIGEST_MARK}{digest}]".strip()
    with tempfile.TemporaryDirectory(prefix="diffucoder-upload-") as tmp, api_errors("upload", namespace):
        path = Path(file)
        if image_registry is not None or image_pull_secrets is not None:
            path = Path(tmp) / Path(file).name   # the server reads the format from the extension
            path.write_text(dump_ir(docs))
        pipeline_id = _find_pipeline(client, name, namespace)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(str(path), pipeline_name=name, description=description,
                                              namespace=namespace)
            pipeline_id = pipeline.pipeline_id
        existing = client.list_pipeline_versions(pipeline_id, page_size=1,
                                                 filter=_equals_filter("display_name", version_name))
        versions = existing.pipeline_versions or []
        if versions:
            recorded = _recorded_digest(versions[0].description)
            if recorded == digest:
                return Uploaded(pipeline_id, versions[0].pipeline_version_id, version_name, digest, created=False)
            what = f"other content ({DIGEST_MARK}{recorded})" if recorded else "no recorded content digest"
            advice = ("choose another --version-name, or leave it out: the default name carries the content "
                      "digest" if explicit else "delete that version (it was not uploaded by this tool)")
            raise DiffucoderError(f"pipeline {name!r} already has a version {version_name!r} with {what}, "
                                  f"not this file's ({DIGEST_MARK}{digest}): {advice}")
        version = client.upload_pipeline_version(str(path), version_name, pipeline_id=pipeline_id,
                                                 description=version_description)
    return Uploaded(pipeline_id, version.pipeline_version_id, version_name, digest, created=True)


def parse_params(items: list[str]) -> dict:
    """``["preset=7b-gpu", "curate_overrides=[\\"a=1\\"]"]`` -> typed pipeline arguments."""
    params = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise DiffucoderError(f"--param {item!r}: expected NAME=VALUE")
        params[key] = yaml.safe_load(raw) if raw.strip() else ""
    return params


def submit(client, file: str | os.PathLike, params: dict, run_name: str, experiment: str,
           version_name: str | None = None, service_account: str | None = None, namespace: str | None = None,
           image_registry: str | None = None, image_pull_secrets: Sequence[str] | None = None) -> str:
    """Start a run of the version of ``file`` (uploaded first if missing); returns the run id.
    ``namespace``: the experiment's (and so the run's) namespace in multi-user Kubeflow."""
    spec = read_pipeline_file(file)
    declared = set(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise DiffucoderError(f"--param: unknown pipeline parameter(s) {unknown}; "
                              f"the pipeline takes {sorted(declared)}")
    uploaded = upload(client, file, version_name, namespace=namespace, image_registry=image_registry,
                      image_pull_secrets=image_pull_secrets)
    with api_errors("submit", namespace):
        experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
        run = client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=params,
                                  pipeline_id=uploaded.pipeline_id, version_id=uploaded.version_id,
                                  service_account=service_account)
    return run.run_id
