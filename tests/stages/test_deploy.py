"""The deploy step: a model in the store -> an InferenceService, applied only where that is right."""
import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.stages.deploy import run_deploy_stage
from diffucoder.kube import ServingRuntimeSpec, render_serving_runtime
from tests.kube.kube_emulator import ISVCS, RUNTIMES, condition, set_status, validation_errors

URL = "http://diffucoder.ml-team.example.com"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.evaluation.evaluation_helpers import make_model_dir
    return make_model_dir(tmp_path_factory.mktemp("model") / "sft")


def publish(root: str, model_dir) -> tuple[str, str]:
    from diffucoder.store import open_store
    manifest = open_store(root).put_artifact("runs/r1/sft", model_dir, metadata={"kind": "model"})
    return f"{root}/runs/r1/sft", manifest.version


def ready(cluster, obj):
    set_status(cluster, ISVCS, obj, {"url": URL, "conditions": [condition("Ready")]})


@pytest.mark.s3
def test_a_model_in_s3_is_deployed_at_its_published_version(s3_uri, model_dir, cluster):
    uri, version = publish(s3_uri, model_dir)
    cluster.put(RUNTIMES, render_serving_runtime(ServingRuntimeSpec(namespace="ml-team", image="serve:1")))
    cluster.on_fetch(ISVCS, ready)
    out = run_deploy_stage("tiny-cpu", uri, name="diffucoder", namespace="ml-team",
                           overrides=["serving.poll_s=0.01"], api_client=cluster.api_client(),
                           log=lambda line: None)
    assert out.applied and out.endpoint == URL and out.result.action == "created"
    stored = cluster.get(ISVCS, "ml-team", "diffucoder")
    assert stored["spec"]["predictor"]["model"]["storageUri"] == f"{uri}/.versions/{version}"
    assert stored["spec"]["predictor"]["model"]["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert validation_errors(out.objects[0]) == []
    assert "applied: **yes**" in out.report_md and URL in out.report_md
    rendered = run_deploy_stage("tiny-cpu", uri, namespace="ml-team", mode="render",
                                api_client=cluster.api_client(), log=lambda line: None)
    assert not rendered.applied and rendered.reason == "mode=render: rendered only"
    assert len(cluster.requests("POST")) == 1


def test_a_file_store_model_is_rendered_not_applied(tmp_path, model_dir, cluster, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    uri, version = publish((tmp_path / "store").as_uri(), model_dir)
    out = run_deploy_stage("tiny-cpu", uri, namespace="ml-team", log=lambda line: None)
    assert not out.applied and out.endpoint == ""
    assert "no cluster" in out.reason and "kubectl apply" in out.report_md
    assert out.objects[0]["spec"]["predictor"]["model"]["storageUri"] == f"{uri}/.versions/{version}"
    # With a cluster at hand, a file:// model is still not applied: KServe could not read it.
    near = run_deploy_stage("tiny-cpu", uri, namespace="ml-team", api_client=cluster.api_client(),
                            log=lambda line: None)
    assert not near.applied and "KServe cannot read" in near.reason
    with pytest.raises(DiffucoderError, match="cannot deploy .* KServe cannot read"):
        run_deploy_stage("tiny-cpu", uri, namespace="ml-team", mode="apply",
                         api_client=cluster.api_client(), log=lambda line: None)
    with pytest.raises(DiffucoderError, match="mode: 'sometimes'"):
        run_deploy_stage("tiny-cpu", uri, mode="sometimes")
    assert not cluster.requests("POST")
