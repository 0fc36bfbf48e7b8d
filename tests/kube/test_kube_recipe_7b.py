"""The 7B recipe's jobs (docs/method.md section 5: adaptation on 10 x 8 H100, SFT on 8 x 8 with ZeRO-2, RL on 8):
rendered from configs/7b-gpu, schema-checked, sized, and their DeepSpeed config loaded by DeepSpeed."""
import argparse

import pytest

from diffucoder.stages.kube_cli import add_arguments, build_job
from diffucoder.kube.config import image_ref, load_cluster_config
from diffucoder.model import build_config, param_count
from kube_emulator import validation_errors

GIB = 1024 ** 3


def job_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["render-job", "--namespace", "ml-team", *argv])


@pytest.mark.parametrize("kind", ["trainjob", "pytorchjob"])
def test_adaptation_job_is_10_nodes_of_8_gpus(kind):
    job, lines, _ = build_job(job_args("--preset", "7b-gpu", "--stage", "pretrain", "--kind", kind))
    assert validation_errors(job) == []
    if kind == "trainjob":
        trainer = job["spec"]["trainer"]
        nodes, procs, resources = trainer["numNodes"], trainer["numProcPerNode"], trainer["resourcesPerNode"]
        command, image = trainer["command"], trainer["image"]
    else:
        replicas = job["spec"]["pytorchReplicaSpecs"]
        nodes = replicas["Master"]["replicas"] + replicas["Worker"]["replicas"]
        procs = int(job["spec"]["nprocPerNode"])
        container = replicas["Master"]["template"]["spec"]["containers"][0]
        resources, command, image = container["resources"], container["command"], container["image"]
    assert (nodes, procs) == (10, 8) and resources["limits"]["nvidia.com/gpu"] == 8
    assert image == image_ref("train")
    assert command[3:6] == ["pretrain", "--preset", "7b-gpu"]
    assert "data.uri='s3://diffucoder/runs/r1/curated'" in command
    # The per-GPU estimate: FSDP over 80 GPUs shards weights, grads and Adam states.
    text = "\n".join(lines)
    assert "10 node(s) x 8 process(es)" in text and "fsdp over 80 ranks" in text
    assert f"{param_count(build_config('7b')):,} params" in text and "fits in 80 GiB" in text


def test_sft_job_estimate_follows_its_deepspeed_config():
    job, lines, _ = build_job(job_args("--preset", "7b-gpu", "--stage", "sft", "--kind", "pytorchjob"))
    assert validation_errors(job) == []
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 7
    text = "\n".join(lines)
    assert "deepspeed ZeRO-2 (configs/deepspeed/zero2.json)" in text and "zero2 over 64 ranks" in text
    job3, lines3, _ = build_job(job_args("--preset", "7b-gpu", "--stage", "sft",
                                         "distributed.deepspeed_config=configs/deepspeed/zero3.json"))
    assert "zero3 over 64 ranks" in "\n".join(lines3)
    assert "distributed.deepspeed_config=configs/deepspeed/zero3.json" in job3["spec"]["trainer"]["command"]


def test_rl_job_is_one_node_of_8_gpus_under_zero2():
    job, lines, _ = build_job(job_args("--preset", "7b-gpu", "--stage", "rl"))
    assert validation_errors(job) == []
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 8)
    assert trainer["command"][3:7] == ["rl", "train", "--preset", "7b-gpu"]
    assert "model.init_from='s3://diffucoder/runs/r1/sft'" in trainer["command"]
    text = "\n".join(lines)
    assert "zero2 over 8 ranks" in text and "+ reference model for the KL term 14.19 GiB" in text


@pytest.mark.parametrize("json_file,stage", [("configs/deepspeed/zero2.json", 2),
                                             ("configs/deepspeed/zero3.json", 3)])
def test_sft_recipe_deepspeed_config_loads_in_deepspeed_at_64_gpus(monkeypatch, json_file, stage):
    from deepspeed import comm
    from deepspeed.runtime.config import DeepSpeedConfig

    from diffucoder.stages.registry import stage as stage_named
    from diffucoder.stages.training import recipe_config, wiring
    from diffucoder.recipes.masked_diffusion import SFTConfig
    from diffucoder.training.engines import deepspeed_config

    sft = stage_named("sft")
    values = wiring(sft, store_root="s3://diffucoder", run_name="r1", data_uri="s3://diffucoder/runs/r1/tasks",
                    init_from="s3://diffucoder/runs/r1/pretrain")
    cfg = recipe_config(SFTConfig, "7b-gpu", sft, values, [f"distributed.deepspeed_config={json_file}"])
    world = load_cluster_config("7b-gpu").training.shape("sft")
    world_size = world.nodes * world.gpus_per_node
    # DeepSpeed reads the world size from its process group; answer as rank 0 of the 8 x 8 job.
    monkeypatch.setattr(comm, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(comm, "get_world_size", lambda *a, **k: world_size)
    ds = DeepSpeedConfig(deepspeed_config(cfg.distributed.deepspeed_config, cfg.optim, cfg.layout(),
                                          world_size=world_size))
    assert world_size == 64 and ds.world_size == 64
    assert ds.zero_optimization_stage == stage
    assert (ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps) == (4, 1)
    assert ds.train_batch_size == 4 * 64  # the recipe's global batch 256
    assert ds.gradient_clipping == cfg.optim.clip


def test_cluster_presets_load_and_size_every_stage():
    big, tiny = load_cluster_config("7b-gpu"), load_cluster_config("tiny-cpu")
    assert {s: (big.training.shape(s).nodes, big.training.shape(s).gpus_per_node)
            for s in ("pretrain", "sft", "rl")} == {"pretrain": (10, 8), "sft": (8, 8), "rl": (1, 8)}
    # serving: the GPU request places the pod; no placement fields, so Knative accepts it too
    assert big.serving.gpus == 1 and big.serving.node_selector == {} and big.serving.tolerations == []
    assert all(tiny.training.shape(s).gpus_per_node == 0 for s in ("pretrain", "sft", "rl"))
    job, lines, _ = build_job(job_args("--preset", "tiny-cpu", "--stage", "pretrain"))
    assert validation_errors(job) == [] and job["spec"]["trainer"]["numProcPerNode"] == 1
    assert "1 node(s) x 1 process(es), 0 GPU(s)" in lines[0]


def test_cluster_config_errors_name_the_key():
    from diffucoder.config import ConfigError
    with pytest.raises(ConfigError, match="'training.kind': must be one of"):
        load_cluster_config("7b-gpu", ["training.kind=mpijob"])
    with pytest.raises(ConfigError, match="'training.stages.sft.nodez': unknown key"):
        load_cluster_config("7b-gpu", ["training.stages.sft.nodez=3"])
