"""Unit, compile and local-runner tests of the deploy component (no cluster: it renders).

Applying against an API server is tested on the library it wraps, with the in-memory
emulator and an S3 store: tests/kube/test_kube_deploy_stage.py and test_kube_deploy.py.
"""
import json
from pathlib import Path

import pytest
import yaml
from kfp import dsl, local

from diffucoder.stage_io import write_ref
from diffucoder.store import open_store
from diffucoder_kfp.components.deploy import deploy
from diffucoder_kfp.components.images import BASE_IMAGE
from diffucoder_kfp.components.testing import compile_component, model_reference
from tests.evaluation.evaluation_helpers import make_model_dir


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("deploy")
    root = (tmp / "store").as_uri()
    open_store(root).put_artifact("runs/t1/rl", make_model_dir(tmp / "model"), metadata={"kind": "model"})
    return f"{root}/runs/t1/rl"


def test_component_interface_is_typed():
    spec = deploy.component_spec
    assert set(spec.inputs) == {"preset", "model", "name", "namespace", "mode", "timeout_s", "overrides"}
    assert spec.inputs["model"].type == "system.Model@0.0.1"
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "manifest": "system.Artifact@0.0.1", "report": "system.Markdown@0.0.1",
        "endpoint": "String", "applied": "Boolean"}
    assert spec.implementation.container.image == BASE_IMAGE


def test_component_compiles(tmp_path):
    ir, executor = compile_component(deploy, tmp_path)
    assert executor["container"]["image"] == BASE_IMAGE
    assert "run_deploy_stage" in " ".join(executor["container"]["command"])
    outputs = ir["root"]["outputDefinitions"]["parameters"]
    assert outputs["endpoint"]["parameterType"] == "STRING" and outputs["applied"]["parameterType"] == "BOOLEAN"


def test_without_a_cluster_it_writes_the_manifest_and_says_why(tmp_path, model_uri, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    model = dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={})
    write_ref(model.path, model_uri)
    manifest = dsl.Artifact(name="manifest", uri=str(tmp_path / "out" / "manifest"), metadata={})
    report = dsl.Markdown(name="report", uri=str(tmp_path / "out" / "report"), metadata={})
    out = deploy.python_func(preset="tiny-cpu", model=model, name="diffucoder", namespace="ml-team",
                             mode="auto", timeout_s=0, overrides=["serving.memory=3Gi"],
                             manifest=manifest, report=report)
    assert (out.endpoint, out.applied) == ("", False)
    (isvc,) = yaml.safe_load_all(Path(manifest.path).read_text())
    model_spec = isvc["spec"]["predictor"]["model"]
    assert model_spec["storageUri"].startswith(f"{model_uri}/.versions/")
    assert model_spec["resources"]["limits"]["memory"] == "3Gi"
    assert manifest.metadata["applied"] is False and "no cluster" in manifest.metadata["reason"]
    assert "applied: **no**" in Path(report.path).read_text()


@dsl.pipeline(name="deploy-test")
def deploy_alone(model_uri: str) -> str:
    model = model_reference(uri=model_uri)
    step = deploy(preset="tiny-cpu", model=model.outputs["artifact"], name="diffucoder",
                  namespace="ml-team", mode="auto", timeout_s=0, overrides=[])
    return step.outputs["endpoint"]


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path, model_uri, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    run = deploy_alone(model_uri=model_uri)
    assert run.output == ""  # the local runner has no cluster: nothing was applied
    manifest = next((tmp_path / "kfp").glob("*/deploy/manifest")).read_text()
    (isvc,) = yaml.safe_load_all(manifest)
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["namespace"] == "ml-team"
    executor = json.loads(next((tmp_path / "kfp").glob("*/deploy/executor_output.json")).read_text())
    assert executor["parameterValues"]["applied"] is False
    assert "not applied: no cluster" in next((tmp_path / "kfp").glob("*/deploy/report")).read_text()
