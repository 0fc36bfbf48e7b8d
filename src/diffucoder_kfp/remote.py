"""Upload the compiled pipeline to a Kubeflow Pipelines server and start runs (``kfp.Client``).

    diffucoder pipeline upload --host http://ml-pipeline-ui.kubeflow --file pipelines/compiled/diffucoder-0.1.0.yaml
    diffucoder pipeline submit --host ... --run-name r1 --param preset=7b-gpu --param store_root=s3://diffucoder

The pipeline version is named after the file (``diffucoder-<version>[+g<rev>].yaml`` ->
``<version>[+g<rev>]``); uploading a version that already exists is a no-op, so the chart's
upload Job can rerun on every ``helm upgrade``. Works without a project checkout: only
the compiled file is needed (the images ship it).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import kfp
import yaml

from diffucoder.errors import DiffucoderError

TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp's own convention for a projected SA token


@dataclass
class Uploaded:
    pipeline_id: str
    version_id: str
    version_name: str
    created: bool


def read_pipeline_file(path: str | os.PathLike) -> dict:
    """Load and sanity-check a compiled pipeline (IR YAML): its pipeline spec, the first document
    (a second one, the platform spec, carries the kfp-kubernetes settings)."""
    path = Path(path)
    if not path.is_file():
        raise DiffucoderError(f"--file: {path} does not exist (run `diffucoder pipeline compile`)")
    try:
        docs = list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as err:
        raise DiffucoderError(f"--file: {path} is not YAML: {err}") from None
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
        raise DiffucoderError(f"--file: {path} is not a compiled kfp pipeline (no pipelineInfo/root)")
    return spec


def version_from_filename(path: str | os.PathLike, pipeline_name: str) -> str:
    stem = Path(path).name.removesuffix(".yaml")
    prefix = f"{pipeline_name}-"
    if not stem.startswith(prefix) or stem == prefix:
        raise DiffucoderError(f"--file: cannot read a version from {Path(path).name!r}; expected "
                              f"{prefix}<version>.yaml or pass --version-name")
    return stem[len(prefix):]


def make_client(host: str, namespace: str | None = None, token_file: str | None = None):
    """A ``kfp.Client`` for ``host``; the token comes from a file, never the command line."""
    token = None
    token_file = token_file or os.environ.get(TOKEN_ENV)
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as err:
            raise DiffucoderError(f"--token-file: cannot read {token_file}: {err}") from None
    try:
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
    except Exception as err:  # connection refused, bad TLS, ...: say which host
        raise DiffucoderError(f"--host: cannot reach Kubeflow Pipelines at {host}: {err}") from None


def _equals_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def upload(client, file: str | os.PathLike, version_name: str | None = None,
           description: str | None = None) -> Uploaded:
    """Create the pipeline if missing, then the version if missing (idempotent)."""
    spec = read_pipeline_file(file)
    name = spec["pipelineInfo"]["name"]
    version_name = version_name or version_from_filename(file, name)
    description = description or spec["pipelineInfo"].get("description", "")
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(file), pipeline_name=name, description=description)
        pipeline_id = pipeline.pipeline_id
    existing = client.list_pipeline_versions(pipeline_id, page_size=1,
                                             filter=_equals_filter("display_name", version_name))
    versions = existing.pipeline_versions or []
    if versions:
        return Uploaded(pipeline_id, versions[0].pipeline_version_id, version_name, created=False)
    version = client.upload_pipeline_version(str(file), version_name, pipeline_id=pipeline_id,
                                             description=description)
    return Uploaded(pipeline_id, version.pipeline_version_id, version_name, created=True)


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
           version_name: str | None = None, service_account: str | None = None) -> str:
    """Start a run of the uploaded version named after ``file``; returns the run id."""
    spec = read_pipeline_file(file)
    declared = set(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    unknown = sorted(set(params) - declared)
    if unknown:
        raise DiffucoderError(f"--param: unknown pipeline parameter(s) {unknown}; "
                              f"the pipeline takes {sorted(declared)}")
    uploaded = upload(client, file, version_name)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    run = client.run_pipeline(experiment_id=experiment_id, job_name=run_name, params=params,
                              pipeline_id=uploaded.pipeline_id, version_id=uploaded.version_id,
                              service_account=service_account)
    return run.run_id
