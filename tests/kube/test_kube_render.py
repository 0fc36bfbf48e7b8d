"""Rendering: TrainJob, PyTorchJob, InferenceService, ServingRuntime — valid, safe, as specified."""
import argparse

import pytest

from diffucoder.config import parse_overrides
from diffucoder.errors import DiffucoderError
from diffucoder.kube import (InferenceSpec, ServingRuntimeSpec, TrainingJobSpec, render_inference_service,
                             render_pytorchjob, render_serving_runtime, render_trainjob)
from diffucoder.stages.cluster import job_command
from diffucoder.stages.registry import stage
from diffucoder.stages.training import as_overrides, wiring
from diffucoder.kube.objects import merge_patch, safe_name, spec_hash, write_manifest
from diffucoder.kube.pods import S3_SECRET_KEYS
from kube_emulator import validation_errors

IMAGE = "ghcr.io/diffucoder-platform/diffucoder-train:0.1.0"
WIRING = dict(store_root="s3://diffucoder", run_name="r1", data_uri="s3://diffucoder/runs/r1/curated")


def spec(**kw) -> TrainingJobSpec:
    base = dict(name="r1-pretrain", namespace="ml-team", image=IMAGE,
                command=job_command(stage("pretrain"), "7b-gpu", wiring(stage("pretrain"), **WIRING)),
                nodes=3, gpus_per_node=8, cpu="64", memory="800Gi",
                node_selector={"nvidia.com/gpu.present": "true"},
                tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                checkpoint_pvc="ckpt")
    return TrainingJobSpec(**{**base, **kw})


def pod_template(job: dict) -> dict:
    if job["kind"] == "TrainJob":
        patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
        return patch["replicatedJobs"][0]["template"]["spec"]["template"]
    return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]


def check_secure_pod(template: dict, container: dict) -> None:
    pod_sc, c_sc = template["spec"]["securityContext"], container["securityContext"]
    assert pod_sc["runAsNonRoot"] and pod_sc["runAsUser"] == 10001
    assert c_sc["readOnlyRootFilesystem"] and not c_sc["allowPrivilegeEscalation"]
    assert c_sc["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/dev/shm"}


def check_secret_env(env: list[dict]) -> None:
    by_name = {e["name"]: e for e in env}
    for key in S3_SECRET_KEYS:  # by reference only: no credential is ever inline
        assert "value" not in by_name[key]
        assert by_name[key]["valueFrom"]["secretKeyRef"] == {"name": "diffucoder-s3", "key": key}


def test_trainjob_uses_the_chart_runtime_and_validates():
    job = render_trainjob(spec())
    assert validation_errors(job) == []
    assert job["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime",
                                         "name": "diffucoder-torch"}
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 8)
    assert trainer["resourcesPerNode"]["limits"] == {"cpu": "64", "memory": "800Gi", "nvidia.com/gpu": 8}
    assert trainer["command"][:6] == ["torchrun", "-m", "diffucoder.cli", "pretrain", "--preset", "7b-gpu"]
    check_secret_env(trainer["env"])
    template = pod_template(job)
    container = template["spec"]["containers"][0]
    assert container["name"] == "node"  # the chart runtime's container, patched by name
    check_secure_pod(template, container)
    assert template["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert template["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}} in template["spec"]["volumes"]
    assert {"name": "checkpoints", "mountPath": "/mnt/checkpoints"} in container["volumeMounts"]


def test_pytorchjob_has_a_master_and_workers_and_validates():
    job = render_pytorchjob(spec(backoff_limit=3, ttl_s=600, active_deadline_s=7200))
    assert validation_errors(job) == []
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    assert job["spec"]["nprocPerNode"] == "8" and "elasticPolicy" not in job["spec"]
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "backoffLimit": 3,
                                        "ttlSecondsAfterFinished": 600, "activeDeadlineSeconds": 7200}
    for replica in replicas.values():
        container = replica["template"]["spec"]["containers"][0]
        assert container["name"] == "pytorch" and container["image"] == IMAGE
        assert container["resources"]["requests"]["nvidia.com/gpu"] == 8
        check_secure_pod(replica["template"], container)
        check_secret_env(container["env"])
        assert replica["template"]["spec"]["automountServiceAccountToken"] is False
    assert "Worker" not in render_pytorchjob(spec(nodes=1))["spec"]["pytorchReplicaSpecs"]
    cpu_job = render_pytorchjob(spec(gpus_per_node=0, nodes=1))
    assert cpu_job["spec"]["nprocPerNode"] == "1"
    resources = cpu_job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "64", "memory": "800Gi"}


def test_the_schema_check_is_not_vacuous():
    job = render_trainjob(spec())
    job["spec"]["trainer"]["numGPUs"] = 8
    del job["spec"]["runtimeRef"]
    errors = validation_errors(job)
    assert any("numGPUs" in e for e in errors) and any("runtimeRef" in e for e in errors)
    pj = render_pytorchjob(spec())
    pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"] = "big"
    assert validation_errors(pj)


@pytest.mark.parametrize("change,message", [
    ({"name": "R1_pretrain"}, "job name"),
    ({"name": "x" * 51}, "at most 50"),
    ({"namespace": ""}, "namespace"),
    ({"memory": "lots"}, "memory: 'lots' is not a Kubernetes quantity"),
    ({"nodes": 0}, "nodes: must be an integer >= 1"),
    ({"command": []}, "command"),
    ({"tolerations": [{"key": "a", "oprator": "Exists"}]}, r"tolerations\[0\]"),
    ({"tolerations": [{"key": "a", "effect": "Sometimes"}]}, r"effect 'Sometimes'"),
    ({"image": "has space"}, "image"),
    ({"checkpoint_mount": "tmp"}, "mount path 'tmp'"),
    ({"env": {"1BAD": "x"}}, "env"),
    ({"queue_name": "Team Queue"}, "queue_name"),
    ({"schedule_timeout_s": 60}, "schedule_timeout_s: only with gang_scheduling"),
    ({"gang_scheduling": True, "schedule_timeout_s": 60}, "its runtime's podGroupPolicy"),
])
def test_bad_specs_are_named(change, message):
    with pytest.raises(DiffucoderError, match=message):
        render_trainjob(spec(**change))


@pytest.mark.parametrize("render", [render_trainjob, render_pytorchjob])
def test_every_pod_opts_out_of_istio_unless_told_not_to(render):
    job = render(spec())
    assert pod_template(job)["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    if job["kind"] == "PyTorchJob":
        worker = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
        assert worker["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert validation_errors(job) == []
    assert "annotations" not in pod_template(render(spec(istio_sidecar_opt_out=False)))["metadata"]


@pytest.mark.parametrize("render", [render_trainjob, render_pytorchjob])
def test_run_id_and_kueue_queue_label_the_job_not_its_pods(render):
    job = render(spec(run_id="0b5a2f3e-7d1c-4c1e-9f00-1234567890ab", queue_name="team-gpu"))
    meta = job["metadata"]
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpu"
    assert meta["labels"]["diffucoder.io/run-id"] == "0b5a2f3e-7d1c-4c1e-9f00-1234567890ab"
    assert meta["annotations"] == {"diffucoder.io/run-id": "0b5a2f3e-7d1c-4c1e-9f00-1234567890ab"}
    pod_labels = pod_template(job)["metadata"]["labels"]
    assert "kueue.x-k8s.io/queue-name" not in pod_labels and "diffucoder.io/run-id" not in pod_labels
    assert validation_errors(job) == []
    # Not in the spec: two runs render the same spec (the launcher compares run ids itself).
    other = render(spec(run_id="another-run"))
    assert spec_hash(other) == spec_hash(job) and other["metadata"]["annotations"] != meta["annotations"]
    # A run id that is no label value is kept exactly in the annotation.
    odd = render(spec(run_id="run #7/retry"))
    assert odd["metadata"]["annotations"]["diffucoder.io/run-id"] == "run #7/retry"
    assert odd["metadata"]["labels"]["diffucoder.io/run-id"] == "run-7-retry"
    assert "labels" in render(spec())["metadata"] and "annotations" not in render(spec())["metadata"]


def test_pytorchjob_gang_scheduling_asks_for_every_replica():
    job = render_pytorchjob(spec(gang_scheduling=True, schedule_timeout_s=600))
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 3, "scheduleTimeoutSeconds": 600}
    assert validation_errors(job) == []
    assert "schedulingPolicy" not in render_pytorchjob(spec())["spec"]["runPolicy"]
    assert render_pytorchjob(spec(gang_scheduling=True))["spec"]["runPolicy"]["schedulingPolicy"] == \
        {"minAvailable": 3}
    # A TrainJob's gang policy is its runtime's: nothing in the job (the launcher checks the runtime).
    assert render_trainjob(spec(gang_scheduling=True)) == render_trainjob(spec())


def test_the_command_reads_back_through_the_stage_cli():
    from diffucoder.recipes.masked_diffusion import add_arguments, load_recipe
    data = "s3://diffucoder/runs/it's/curated"  # a quote survives the override parser
    values = wiring(stage("pretrain"), store_root="s3://diffucoder", run_name="r1", data_uri=data,
                    init_from="s3://models/Qwen2.5-Coder-7B", checkpoint_dir="/mnt/checkpoints")
    command = job_command(stage("pretrain"), "tiny-cpu", values, ["train.steps=70"])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert command[:4] == ["torchrun", "-m", "diffucoder.cli", "pretrain"]
    cfg = load_recipe(parser.parse_args(command[4:]), "pretrain")  # what each node's CLI does
    assert cfg.data.uri == data and cfg.model.init_from == "s3://models/Qwen2.5-Coder-7B"
    assert cfg.output.uri == "s3://diffucoder/runs/r1/pretrain"
    assert cfg.checkpoint.uri == "file:///mnt/checkpoints/r1/pretrain-checkpoints"
    assert cfg.train.steps == 70
    assert parse_overrides(as_overrides(values))["data"]["uri"] == data


def test_inference_service_and_runtime_validate():
    isvc = render_inference_service(InferenceSpec(
        name="diffucoder-r1", namespace="ml-team", storage_uri="s3://diffucoder/runs/r1/sft/.versions/v1",
        gpus=1, cpu="8", memory="64Gi", node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}], max_replicas=2,
        deployment_mode="RawDeployment"))
    assert validation_errors(isvc) == []
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "diffucoder-kserve"
    assert predictor["model"]["runtime"] == "diffucoder-runtime"
    assert predictor["model"]["modelFormat"] == {"name": "diffucoder", "version": "1"}
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert predictor["securityContext"]["runAsNonRoot"]
    assert predictor["model"]["securityContext"]["readOnlyRootFilesystem"]
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
    runtime = render_serving_runtime(ServingRuntimeSpec(namespace="ml-team", image="img:1"))
    assert validation_errors(runtime) == []
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == "diffucoder"
    assert runtime["spec"]["containers"][0]["args"] == [
        "diffucoder", "serve", "--model", "/mnt/models", "--port", "8080",
        "--config", "/opt/diffucoder/configs/tiny-cpu/serve.yaml", "--model_name={{.Name}}"]
    gpu = render_serving_runtime(ServingRuntimeSpec(namespace="ml-team", image="img:1", gpus=1))
    assert gpu["spec"]["containers"][0]["args"][7] == "/opt/diffucoder/configs/7b-gpu/serve.yaml"
    assert gpu["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize("change, message", [
    ({"preset": "7b-gpu"}, "runs on cuda; give the runtime gpus >= 1"),
    ({"preset": "tiny-cpu", "gpus": 2}, "the 2 GPU\\(s\\) would sit idle"),
    ({"preset": "no-such-preset"}, "no recipe 'serve.yaml' for preset 'no-such-preset'"),
    ({"startup_timeout_s": 5}, "startup_timeout_s: must be an integer >= 10"),
    ({"image": ""}, "image"),
])
def test_runtime_refuses_a_serve_config_its_resources_cannot_run(change, message):
    with pytest.raises(DiffucoderError, match=message):
        render_serving_runtime(ServingRuntimeSpec(**{"namespace": "ml-team", "image": "img:1", **change}))


def test_default_mode_is_raw_deployment_and_the_isvc_carries_it():
    isvc = render_inference_service(InferenceSpec(name="d", namespace="n", storage_uri="s3://b/m"))
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert "privileged" not in isvc["spec"]["predictor"]["model"]["securityContext"]


def test_inference_service_refuses_what_kserve_cannot_read():
    local = dict(name="d", namespace="ml-team", storage_uri="file:///tmp/store/runs/r1/sft")
    with pytest.raises(DiffucoderError, match="a file:// store is not reachable from a cluster"):
        render_inference_service(InferenceSpec(**local))
    assert render_inference_service(InferenceSpec(**local, allow_local_uri=True))["spec"]["predictor"]
    with pytest.raises(DiffucoderError, match="max_replicas"):
        render_inference_service(InferenceSpec(name="d", namespace="n", storage_uri="s3://b/m",
                                               min_replicas=3, max_replicas=2))


def test_names_patches_and_manifests(tmp_path):
    assert safe_name("r1", "pretrain") == "r1-pretrain"
    long = safe_name("KFP-Run_3f2a" * 8, "pretrain")
    assert len(long) <= 40 and long[0].isalpha() and long != safe_name("KFP-Run_3f2b" * 8, "pretrain")
    # RFC 7386: removed keys become null, nested dicts merge, lists are replaced whole.
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}, "l": [1]},
                       {"b": {"c": 1, "d": 3}, "l": [2], "e": 5}) == \
        {"a": None, "b": {"d": 3}, "l": [2], "e": 5}
    assert merge_patch({"a": 1}, {"a": 1}) == {}
    path = write_manifest(tmp_path / "out" / "job.yaml", [render_trainjob(spec()), render_pytorchjob(spec())])
    import yaml
    assert [d["kind"] for d in yaml.safe_load_all(path.read_text())] == ["TrainJob", "PyTorchJob"]
    assert [p.name for p in path.parent.iterdir()] == ["job.yaml"]  # no temp file left behind
