"""What a pipeline step calls in cluster mode: render the stage's job from cluster.yaml + a dict."""
import yaml

from diffucoder.config import parse_overrides
from diffucoder.kube import JOB_KINDS
from diffucoder.stages.cluster import cluster_overrides, launch_stage_job, render_stage_job
from diffucoder.stages.registry import stage
from tests.kube.kube_emulator import PYTORCHJOBS, add_pod, condition, log_lines, pod, set_status, validation_errors

GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def test_cluster_dicts_become_overrides_that_read_back():
    cluster = {"training": {"kind": "pytorchjob", "tolerations": [GPU_TAINT],
                            "node_selector": {"pool": "a100"}, "stages": {"sft": {"nodes": 4}}},
               "training.checkpoint_pvc": "ckpt"}
    sets = cluster_overrides(cluster)
    assert parse_overrides(sets) == {"training": {
        "kind": "pytorchjob", "tolerations": [GPU_TAINT], "node_selector": {"pool": "a100"},
        "stages": {"sft": {"nodes": 4}}, "checkpoint_pvc": "ckpt"}}
    job, lines, cfg = render_stage_job(stage("sft"), "tiny-cpu", store_root="s3://diffucoder", run_name="kfp-run-1",
                                       data_uri="s3://diffucoder/runs/kfp-run-1/tasks",
                                       init_from="s3://diffucoder/runs/kfp-run-1/pretrain",
                                       cluster=cluster, namespace="ml-team")
    assert cfg.training.tolerations == [GPU_TAINT] and cfg.training.shape("sft").nodes == 4
    assert validation_errors(job) == [] and job["kind"] == "PyTorchJob"
    assert job["metadata"]["name"] == "kfp-run-1-sft"
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert master["tolerations"] == [GPU_TAINT] and master["nodeSelector"] == {"pool": "a100"}
    assert {"name": "checkpoints", "mountPath": "/mnt/checkpoints"} in master["containers"][0]["volumeMounts"]
    command = master["containers"][0]["command"]
    assert "checkpoint.uri='file:///mnt/checkpoints/kfp-run-1/sft-checkpoints'" in command
    assert "model.init_from='s3://diffucoder/runs/kfp-run-1/pretrain'" in command
    assert lines[0].startswith("4 node(s) x 1 process(es)")
    assert cluster_overrides(None) == [] and cluster_overrides(["a.b=1"]) == ["a.b=1"]


def test_launch_stage_job_records_the_manifest_and_follows_the_job(cluster, tmp_path):
    name, info = "r7-pretrain", JOB_KINDS["PyTorchJob"]

    def start(c, obj):
        add_pod(c, pod(f"{name}-master-0", "ml-team", info.master_selector(name), container="pytorch"))
        c.logs[f"{name}-master-0"] = log_lines(0, 2, "loss {i}")

    def done(c, obj):
        set_status(c, PYTORCHJOBS, obj, {"conditions": [condition("Succeeded", "PyTorchJobSucceeded")]})

    cluster.on_fetch(PYTORCHJOBS, start, done)
    log = []
    result = launch_stage_job(stage("pretrain"), "tiny-cpu", store_root="s3://diffucoder", run_name="r7",
                              data_uri="s3://diffucoder/runs/r7/curated", overrides=["train.steps=40"],
                              cluster={"training": {"kind": "pytorchjob", "poll_s": 0.01}},
                              namespace="ml-team", api_client=cluster.api_client(),
                              manifest_path=str(tmp_path / "job" / "manifest.yaml"), log=log.append)
    assert result.created and result.kind == "PyTorchJob" and result.log_lines == 2
    sent = yaml.safe_load((tmp_path / "job" / "manifest.yaml").read_text())
    assert cluster.last_version(PYTORCHJOBS, "ml-team", name)["spec"] == sent["spec"]
    assert "loss 1" in log and any("per-GPU memory estimate" in line for line in log)
    # training.delete_after_success (on in the presets): the finished job is garbage-collected.
    assert cluster.get(PYTORCHJOBS, "ml-team", name) is None
    assert any("deleted PyTorchJob ml-team/r7-pretrain (succeeded" in line for line in log)


def test_cluster_yaml_scheduling_settings_reach_the_job():
    job, _, cfg = render_stage_job(stage("pretrain"), "7b-gpu", store_root="s3://diffucoder", run_name="r8",
                                   data_uri="s3://diffucoder/runs/r8/curated", namespace="ml-team",
                                   run_id="run-8",
                                   cluster=["training.kind=pytorchjob", "training.queue_name=gpu-team",
                                            "training.gang_scheduling=true", "training.schedule_timeout_s=900",
                                            "training.istio_sidecar_opt_out=false"])
    assert validation_errors(job) == []
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-team"
    assert job["metadata"]["annotations"]["diffucoder.io/run-id"] == "run-8"
    assert job["spec"]["runPolicy"]["schedulingPolicy"] == {"minAvailable": 10, "scheduleTimeoutSeconds": 900}
    assert "annotations" not in job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["metadata"]
    assert cfg.training.launch_options()["gang_scheduling"] is True
    # The preset as shipped: a TrainJob whose pods opt out of Istio, no queue, no gang.
    job, _, cfg = render_stage_job(stage("pretrain"), "7b-gpu", store_root="s3://diffucoder", run_name="r8",
                                   data_uri="s3://diffucoder/runs/r8/curated", namespace="ml-team")
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["template"]["spec"]["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert cfg.training.launch_options() == {"timeout_s": 259200, "poll_s": 30.0, "stuck_after_s": 900.0,
                                             "unschedulable_after_s": 3600.0, "delete_after_success": True,
                                             "gang_scheduling": False}
