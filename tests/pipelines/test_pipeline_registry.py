"""One registry setting reaches every image: the compiled pipeline (every step, and the constant the
placement step builds the jobs' image from), the TrainJob / PyTorchJob a training step sends, and
the image pull Secrets of every step. The chart's side (ServingRuntime, Jobs, ServiceAccounts):
tests/platform/test_chart_registry.py."""
import json
import re

import pytest
import yaml
from kfp import compiler, dsl, kubernetes

import diffucoder.stages.cluster as cluster_module
from diffucoder import __version__
from diffucoder.errors import DiffucoderError
from diffucoder.kube.config import DEFAULT_REGISTRY, REGISTRY_ENV, image_ref, inference_spec, load_cluster_config
from diffucoder.kube.inference import render_inference_service
from diffucoder.stages.cluster import step_launcher
from diffucoder.stages.registry import stage
from diffucoder_kfp.compile import compile_pipeline, read_ir, retarget
from diffucoder_kfp.components.testing import dataset_reference
from diffucoder_kfp.placement import placement_outputs, step_pods
from tests.checkout import COMPILED_DIR

REGISTRY = "registry.example.com:5000/team/ml"
SECRETS = ["regcred", "mirror-cred"]
# An image reference: <registry>/diffucoder-<image>:<tag> (not a Service or Job named diffucoder-minio-*).
IMAGE = re.compile(r"[\w.:-]+(?:/[\w.-]+)*/diffucoder-(?:base|train|serve|minio):[\w.@:-]+")
PARAMETER_IMAGE = re.compile(r"^\{\{\$\.inputs\.parameters\['pipelinechannel--placement-\w+_image'\]\}\}$")


@pytest.fixture(scope="module")
def custom(tmp_path_factory) -> list[dict]:
    path = compile_pipeline(tmp_path_factory.mktemp("custom"), image_registry=REGISTRY, image_pull_secrets=SECRETS)
    return read_ir(path)


def test_a_custom_registry_compile_names_no_other_registry(custom):
    text = yaml.safe_dump_all(custom)
    refs = IMAGE.findall(text)
    assert refs and all(ref.startswith(f"{REGISTRY}/diffucoder-") for ref in refs), sorted(set(refs))
    assert DEFAULT_REGISTRY not in text and "ghcr.io" not in text
    ir, platform = custom
    for label, executor in ir["deploymentSpec"]["executors"].items():
        image = executor["container"]["image"]
        assert image.startswith(f"{REGISTRY}/diffucoder-") or PARAMETER_IMAGE.match(image), (label, image)
    (task,) = [t for t in ir["root"]["dag"]["tasks"].values() if "image_registry" in t["inputs"]["parameters"]]
    assert task["inputs"]["parameters"]["image_registry"]["runtimeValue"]["constant"] == REGISTRY
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(ir["deploymentSpec"]["executors"])
    for label, config in executors.items():
        assert [s["secretName"] for s in config["imagePullSecret"]] == SECRETS, label


def test_moving_a_compiled_file_equals_compiling_for_that_registry(custom):
    committed = read_ir(COMPILED_DIR / f"diffucoder-{__version__}.yaml")
    assert retarget(committed, REGISTRY, SECRETS) == custom
    assert retarget(custom, DEFAULT_REGISTRY, []) == committed   # and back, pull Secrets removed
    assert retarget(committed) == committed


def test_the_pull_secret_entries_are_what_kfp_kubernetes_records(tmp_path):
    """An oracle from kfp-kubernetes itself: set_image_pull_secrets on a one-step pipeline."""
    @dsl.pipeline(name="one")
    def one():
        kubernetes.set_image_pull_secrets(dataset_reference(uri="x"), SECRETS)

    compiler.Compiler().compile(one, str(tmp_path / "one.yaml"))
    docs = read_ir(tmp_path / "one.yaml")
    (expected,) = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    bare = [docs[0], {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}]
    with pytest.raises(DiffucoderError, match="no task input 'image_registry'"):
        retarget(bare, REGISTRY)
    (moved,) = retarget(bare, None, SECRETS)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    assert moved == expected


def test_a_foreign_image_or_registry_is_refused(custom):
    foreign = json.loads(json.dumps(custom))
    next(iter(foreign[0]["deploymentSpec"]["executors"].values()))["container"]["image"] = "python:3.11"
    with pytest.raises(DiffucoderError, match="not one of the project's images"):
        retarget(foreign, "other.example.com")
    for bad in ("https://registry.example.com", "registry.example.com/ml:1.0", "Registry.Example.com", ""):
        with pytest.raises(DiffucoderError, match="image registry"):
            retarget(custom, bad)
    with pytest.raises(DiffucoderError, match="not a Kubernetes Secret name"):
        retarget(custom, None, ["Reg_Cred"])


@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
def test_the_job_a_training_step_sends_runs_the_registrys_train_image(kind, monkeypatch, tmp_path):
    """The step's own code path (its launcher, given the placement step's ``job_image``) up to the
    object it would send; the pod's environment names another registry, which must not matter."""
    monkeypatch.setenv(REGISTRY_ENV, "elsewhere.example.com/not-this")
    # What the placement step outputs (components/placement: job_image = image_ref("train", image_registry)).
    outputs = placement_outputs(step_pods("7b-gpu", kind, registry=REGISTRY), job_image=image_ref("train", REGISTRY))
    assert outputs["pretrain_image"] == f"{REGISTRY}/diffucoder-base:{__version__}"   # the launcher's own pod
    sent = []

    class Sent(Exception):
        """Raised with the job a step sends, so the step stops there."""

    def capture(job, **_):
        sent.append(job)
        raise Sent

    monkeypatch.setattr(cluster_module, "launch", capture)
    launcher = step_launcher(kind, [], str(tmp_path / "job.yaml"), run_id="run-1", store_secret="diffucoder-s3",
                             image=outputs["job_image"])
    launcher.api_client = object()   # never used: `launch` is where the object would be sent
    with pytest.raises(Sent):
        launcher.run(stage("pretrain"), "7b-gpu", store_root="s3://diffucoder", run_name="r1",
                     data_uri="s3://diffucoder/runs/r1/curated")
    (job,) = sent
    refs = IMAGE.findall(json.dumps(job))
    assert refs and set(refs) == {f"{REGISTRY}/diffucoder-train:{__version__}"}
    recorded = next(yaml.safe_load_all((tmp_path / "job.yaml").read_text()))
    assert recorded["kind"] == job["kind"]   # the step's `job` output holds what it sent
    # A cluster override of the image still wins over the pipeline's registry.
    launcher = step_launcher(kind, ["training.image=mirror.example.com/train:x"], str(tmp_path / "j2.yaml"),
                             image=outputs["job_image"])
    launcher.api_client = object()
    with pytest.raises(Sent):
        launcher.run(stage("sft"), "7b-gpu", store_root="s3://diffucoder", run_name="r1",
                     data_uri="s3://diffucoder/runs/r1/tasks")
    assert IMAGE.findall(json.dumps(sent[-1])) == [] and "mirror.example.com/train:x" in json.dumps(sent[-1])


def test_the_inference_service_names_no_image_only_the_charts_runtime():
    """The deploy step's object: KServe takes the image from the ServingRuntime the chart renders
    with images.registry (tests/platform/test_chart_registry.py)."""
    cfg = load_cluster_config("7b-gpu")
    isvc = render_inference_service(inference_spec(cfg, name="diffucoder", namespace="ml-team",
                                                   storage_uri="s3://diffucoder/runs/r1/rl/.versions/v1"))
    assert IMAGE.findall(json.dumps(isvc)) == [] and '"image"' not in json.dumps(isvc)
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "diffucoder-runtime"
