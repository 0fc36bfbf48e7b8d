"""A training step with a cluster launcher: the job it sends runs the recipe (here: the job's own
command, run as the pod would run it), and the step reports the model that job published."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffucoder.errors import DiffucoderError
from diffucoder.kube import JOB_KINDS
from diffucoder.stages.cluster import ClusterLauncher, render_stage_job, step_launcher
from diffucoder.stages.pretrain import run_pretrain_stage
from diffucoder.stages.registry import stage
from diffucoder.store import open_store
from tests.kube.kube_emulator import TRAINJOBS, add_pod, condition, log_lines, pod, set_status
from tests.training.training_helpers import MICRO_MODEL, make_shards

NS = "ml-team"
RECIPE = [*MICRO_MODEL, "train.steps=2", "data.batch_size=2", "train.eval_batches=1", "checkpoint.every_steps=1",
          "optim.warmup_steps=1", "train.log_every=1", "train.threads=1"]


def run_like_the_pod(job: dict, env: dict) -> None:
    """What every node of the TrainJob runs: its command (torchrun -m diffucoder.cli ...), one process."""
    command = job["spec"]["trainer"]["command"]
    assert command[:3] == ["torchrun", "-m", "diffucoder.cli"]
    subprocess.run([sys.executable, *command[1:]], check=True, env=env, capture_output=True, timeout=600)


@pytest.mark.integration
def test_pretrain_through_a_trainjob_publishes_what_the_in_process_stage_would(cluster, tmp_path, monkeypatch):
    import os
    monkeypatch.setenv("DIFFUCODER_CACHE", str(tmp_path / "cache"))
    store_root = (tmp_path / "store").as_uri()
    store = open_store(store_root)
    store.put_artifact("runs/r8/curated", make_shards(tmp_path / "curated"))
    name, info = "r8-pretrain", JOB_KINDS["TrainJob"]

    def start(c, obj):   # the controller starts the pods; the pod trains and publishes
        run_like_the_pod(obj, {**os.environ, "PYTHONUNBUFFERED": "1"})
        add_pod(c, pod(f"{name}-node-0-0-abcde", NS, info.master_selector(name), container=info.container))
        c.logs[f"{name}-node-0-0-abcde"] = log_lines(0, 2, "step {i}")

    def done(c, obj):
        set_status(c, TRAINJOBS, obj, {"conditions": [condition("Complete", "JobComplete")]})

    cluster.on_fetch(TRAINJOBS, start, done)
    launcher = ClusterLauncher(kind="trainjob", cluster=[f"training.namespace={NS}", "training.poll_s=0.01"],
                               manifest_path=str(tmp_path / "job.yaml"), api_client=cluster.api_client())
    out = run_pretrain_stage("tiny-cpu", f"{store_root}/runs/r8/curated", store_root, "r8", overrides=RECIPE,
                             launcher=launcher)

    assert out.uri == f"{store_root}/runs/r8/pretrain" and store.has_artifact("runs/r8/pretrain")
    summary = json.loads(store.open_file("runs/r8/pretrain", "training/summary.json"))
    assert summary["steps"] == 2 and out.metrics["final_loss"] == pytest.approx(summary["final_loss"])
    assert "data:image/png;base64," in out.report_md
    assert out.metadata["job"]["kind"] == "TrainJob" and out.metadata["job"]["name"] == name
    sent = yaml.safe_load((tmp_path / "job.yaml").read_text())
    assert cluster.last_version(TRAINJOBS, NS, name)["spec"] == sent["spec"]
    assert f"output.uri='{store_root}/runs/r8/pretrain'" in sent["spec"]["trainer"]["command"]


def test_a_bad_recipe_fails_before_any_job_is_sent(cluster, tmp_path):
    launcher = ClusterLauncher(kind="trainjob", cluster=[f"training.namespace={NS}"], api_client=cluster.api_client())
    with pytest.raises(DiffucoderError, match="train.stepz"):
        run_pretrain_stage("tiny-cpu", "s3://diffucoder/runs/r9/curated", "s3://diffucoder", "r9",
                           overrides=["train.stepz=3"], launcher=launcher)
    assert cluster.requests("POST") == []


def publish_fake_model(store_root: str, run: str, work: Path) -> None:
    """What the job's rank 0 publishes, reduced to what the step reads back (describe_model)."""
    out = work / "published" / "pretrain"
    (out / "training").mkdir(parents=True)
    (out / "training" / "summary.json").write_text(json.dumps(
        {"params": 1000, "backend": "none", "world_size": 1, "final_loss": 2.5, "steps": 2}))
    (out / "training" / "report.md").write_text("# Training report: pretrain\n")
    open_store(store_root).put_artifact(f"runs/{run}/pretrain", out)


def test_a_step_gives_its_job_its_store_secret_and_its_run_id(cluster, tmp_path):
    """The component path: step_launcher(..., run_id, store_secret) -> the job the step sends."""
    store_root, name = (tmp_path / "store").as_uri(), "r5-pretrain"
    cluster.on_fetch(TRAINJOBS, lambda c, obj: publish_fake_model(store_root, "r5", tmp_path),
                     lambda c, obj: set_status(c, TRAINJOBS, obj, {"conditions": [condition("Complete")]}))
    launcher = step_launcher("trainjob", [f"training.namespace={NS}", "training.poll_s=0.01"],
                             str(tmp_path / "job.yaml"), run_id="4f0c1a9e-run", store_secret="team-s3")
    launcher.api_client = cluster.api_client()
    out = run_pretrain_stage("tiny-cpu", f"{store_root}/runs/r5/curated", store_root, "r5", launcher=launcher)

    assert out.metrics["final_loss"] == 2.5 and out.metadata["job"]["created"]
    sent = cluster.last_version(TRAINJOBS, NS, name)
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in sent["spec"]["trainer"]["env"] if "valueFrom" in e}
    assert refs == {"team-s3"}          # before the fix: always diffucoder-s3 (the preset's default)
    assert sent["metadata"]["annotations"]["diffucoder.io/run-id"] == "4f0c1a9e-run"
    assert sent["metadata"]["labels"]["diffucoder.io/run-id"] == "4f0c1a9e-run"
    assert yaml.safe_load((tmp_path / "job.yaml").read_text())["spec"] == sent["spec"]
    assert cluster.get(TRAINJOBS, NS, name) is None   # succeeded: deleted (training.delete_after_success)


def test_an_override_naming_another_store_secret_is_an_error():
    with pytest.raises(DiffucoderError, match="training.s3_secret='other-s3' contradicts the step's store "
                                              "Secret 'team-s3'"):
        render_stage_job(stage("pretrain"), "tiny-cpu", store_root="s3://diffucoder", run_name="r6",
                         data_uri="s3://diffucoder/runs/r6/curated", namespace=NS,
                         cluster=["training.s3_secret=other-s3"], store_secret="team-s3")
    job, _, cfg = render_stage_job(stage("pretrain"), "tiny-cpu", store_root="s3://diffucoder", run_name="r6",
                                   data_uri="s3://diffucoder/runs/r6/curated", namespace=NS,
                                   cluster=["training.s3_secret=team-s3"], store_secret="team-s3")
    assert cfg.training.s3_secret == "team-s3"
    # Without a store_secret (diffucoder kube render-job / launch) the preset's value stands.
    job, _, cfg = render_stage_job(stage("pretrain"), "tiny-cpu", store_root="s3://diffucoder", run_name="r6",
                                   data_uri="s3://diffucoder/runs/r6/curated", namespace=NS)
    assert cfg.training.s3_secret == "diffucoder-s3" and "annotations" not in job["metadata"]
