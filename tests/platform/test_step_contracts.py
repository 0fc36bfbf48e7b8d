"""Every step of the compiled pipeline runs the way KFP runs it, in the environment its image installs.

For each executor of ``pipelines/compiled/``: the environment of its image (``images/<name>/
requirements.txt`` installed as the Dockerfile installs it; ``contract_envs``), its ``command`` +
``args`` from the compiled YAML with the placeholders substituted as KFP's launcher does, and
the inputs its driver would hand it (``kfp_emulation``), in the image the driver gives its pod
(the placement step's output for the model-holding steps). The tiny preset runs the whole DAG on
a ``file://`` store: placement, curate, pretrain / SFT / RL training in their own pod (train
image), both evaluations (train image), deploy in render mode. Then placement and pretrain run
again with ``training_launcher=trainjob`` against an in-memory Kubernetes API: the launcher runs
in the base image's environment, the TrainJob it creates is run as its pods would run it (the
job's command, in the environment of the job's image), and the step reports the model the job
published. The 7b-gpu placement runs too, and the pods the driver would build from it are checked.
A step whose image lacks a module it imports fails here (``test_a_step_whose_image_lacks_a_module_fails``).

The environments are cached by requirements hash (``$DIFFUCODER_CONTRACT_CACHE``); a cold
cache builds them first (about a minute each, in parallel).
"""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from contract_envs import ROOT, ContractEnv, env_from_requirements, image_envs, image_name
from diffucoder import __version__
from diffucoder.kube import JOB_KINDS
from diffucoder.kube.config import image_ref, load_cluster_config
from diffucoder.model import build_config, memory_plan
from diffucoder.store import open_store
from diffucoder_kfp.components.images import STEP_IMAGES
from diffucoder_kfp.placement import LAUNCHER_CPU, LAUNCHER_MEMORY
from kfp_emulation import POD_SPEC_PARAMETER, CompiledPipeline, PipelineRun, StepResult
from tests.checkout import COMPILED_DIR
from tests.kube.kube_emulator import TRAINJOBS, Cluster, add_pod, condition, log_lines, pod, set_status
from tests.training.training_helpers import MICRO_MODEL

pytestmark = pytest.mark.integration

PIPELINE = CompiledPipeline.load(COMPILED_DIR / f"diffucoder-{__version__}.yaml")
RUN = "contract"
NS = "ml-team"
# Micro budgets: every step does its real work, on a model and data a few KB large.
TRAIN = ["train.steps=2", "data.batch_size=2", "train.eval_batches=1", "checkpoint.every_steps=1",
         "optim.warmup_steps=1", "train.log_every=1"]
PARAMS = {
    "preset": "tiny-cpu", "run_name": RUN,
    "curate_overrides": ["tokenizer.vocab_size=512", "pack.seq_len=64", "pack.val_fraction=0.1",
                         "decontam.enabled=false"],
    "pretrain_overrides": [*MICRO_MODEL, *TRAIN],
    "sft_overrides": [*TRAIN, "data.seq_len=512", "tasks.max_per_family=1"],
    "rl_overrides": ["train.steps=1", "rollout.group_size=2", "rollout.prompts_per_step=2",
                     "rollout.sampling.max_new_tokens=8", "rollout.sampling.steps=4", "objective.mu=1",
                     "reward.workers=1", "checkpoint.every_steps=1"],
    "evaluate_overrides": ["max_tasks=2", "batch_size=2", "sampling.max_new_tokens=8", "sampling.steps=4",
                           "limits.time_floor_s=1.0"],
    "deploy_mode": "render", "deploy_min_pass_at_1": 0.0,   # the gate opens: deploy runs
}


def used_images() -> list[str]:
    """The images steps run on: fixed in the compiled pipeline, or chosen by the placement step."""
    return sorted(STEP_IMAGES)


def corpus(root: Path) -> Path:
    """Python modules made of the synthetic tasks (so the curated tokenizer knows their words)."""
    from diffucoder.tasks import generate_suite
    root.mkdir()
    for index, task in enumerate(generate_suite(seed=0, max_per_family=2)):
        (root / f"task_{index}.py").write_text(f'"""{task.instruction}"""\n{task.solution_code()}\n')
    return root


def report(pytestconfig, line: str) -> None:
    """A line in the test log even under capture: what a cold cache or a step costs shows in CI
    logs (never asserted)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    if capture and reporter:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


@pytest.fixture(scope="module")
def envs(pytestconfig) -> dict[str, ContractEnv]:
    with image_envs(used_images()) as built:
        for env in {e.path: e for e in built.values()}.values():
            report(pytestconfig, f"contract env {'+'.join(env.images)} ({env.path}): "
                                 f"{f'built in {env.build_seconds:.0f} s' if env.build_seconds else 'cached'}, "
                                 f"project {f'installed in {env.project_seconds:.0f} s' if env.project_seconds else 'current'}")
        yield built


@pytest.fixture(scope="module")
def dag_run(envs, tmp_path_factory, pytestconfig) -> PipelineRun:
    """The whole DAG, in process, each step in its image's environment; failures are recorded,
    and a step whose upstream failed is not run (each test below reports its own step)."""
    tmp = tmp_path_factory.mktemp("contract-dag")
    params = {**PARAMS, "store_root": (tmp / "store").as_uri(), "curate_input": str(corpus(tmp / "corpus"))}
    run = PipelineRun(PIPELINE, params, tmp / "pipeline-root", job_id="contract-dag-0001")
    run.run_all(lambda image: envs[image_name(image)], check=False)
    report(pytestconfig, "contract steps: " + ", ".join(
        f"{path} {r.seconds:.0f} s{'' if r.returncode == 0 else ' FAILED'}"
        for path, r in {**run.results, **run.failures}.items()))
    return run


def result_of(run: PipelineRun, path: str) -> StepResult:
    if path in run.skipped:
        pytest.skip(f"{path}: {run.skipped[path]}")
    if path in run.blocked:
        pytest.fail(f"{path} did not run: {run.blocked[path]}")
    result = run.results.get(path) or run.failures.get(path)
    assert result is not None, f"{path} was never reached"
    assert result.returncode == 0, (f"step {path} ({result.executor} on {result.image}) failed with exit "
                                    f"{result.returncode}:\n{result.tail()}")
    return result


def test_every_step_image_is_a_project_image_with_kfps_executor():
    """Static half of the contract: each executor's image is built from images/<name> (or is the
    placement step's output, one of those), and its pinned install carries kfp (the executor,
    ``python3 -m kfp.dsl.executor_main``)."""
    for name in used_images():
        pins = (ROOT / "images" / name / "requirements.txt").read_text()
        assert "\nkfp==" in pins, f"steps run on {name}, whose requirements.txt has no kfp"
    for label, executor in PIPELINE.executors().items():
        chosen = POD_SPEC_PARAMETER.search(executor.image)
        if chosen:
            assert chosen[1].startswith("pipelinechannel--placement-"), (label, executor.image)
        else:
            assert image_name(executor.image) in used_images(), (label, executor.image)
        assert any("kfp.dsl.executor_main" in part for part in executor.command), label


STEP_CHECKS = {}


def check(name):
    def register(fn):
        STEP_CHECKS[name] = fn
        return fn
    return register


@check("placement")
def _placed(run, out):
    assert out["pretrain_image"] == out["evaluate_image"] == image_ref("train")   # in-process, tiny-cpu
    assert out["evaluate_gpus"] == "0" and out["evaluate_accelerator"] == ""      # its evaluate runs on cpu
    assert out["job_image"] == image_ref("train")


@check("curate")
def _curated(run, out):
    assert out["curated"].metadata["store_uri"] == f"{run.params['store_root']}/runs/{RUN}/curated"
    assert out["curated"].metadata["train_rows"] > 0


@check("pretrain")
def _pretrained(run, out):
    store = open_store(run.params["store_root"])
    assert store.has_artifact(f"runs/{RUN}/pretrain")
    summary = json.loads(store.open_file(f"runs/{RUN}/pretrain", "training/summary.json"))
    assert summary["steps"] == 2
    assert out["job"].metadata["launcher"] == "in-process"


@check("midtrain")
def _passed_on(run, out):   # mid-training is off by default: the pre-trained model goes on, from the base image
    assert out["midtrain_model"].metadata["store_uri"] == f"{run.params['store_root']}/runs/{RUN}/pretrain"
    assert run.results["midtrain"].image == image_ref("base")


@check("sft")
def _tuned(run, out):
    assert open_store(run.params["store_root"]).has_artifact(f"runs/{RUN}/sft")
    assert out["tasks"].metadata["store_uri"].endswith(f"runs/{RUN}/tasks")


@check("rl")
def _improved(run, out):
    summary = json.loads(open_store(run.params["store_root"]).open_file(f"runs/{RUN}/rl", "training/summary.json"))
    assert summary["steps"] == 1 and summary["rollouts"] == 4


@check("evaluate")
def _evaluated(run, out):
    assert 0.0 <= out["Output"] <= 1.0
    assert open_store(run.params["store_root"]).has_artifact(f"runs/{RUN}/evaluate-sft")


@check("evaluate-2")
def _evaluated_rl(run, out):
    assert 0.0 <= out["Output"] <= 1.0
    assert open_store(run.params["store_root"]).has_artifact(f"runs/{RUN}/evaluate-rl")


@check("deploy")
def _rendered(run, out):
    assert out["applied"] is False and out["endpoint"] == ""
    (isvc,) = yaml.safe_load_all(Path(out["manifest"].path).read_text())
    assert isvc["kind"] == "InferenceService" and isvc["metadata"]["name"] == "diffucoder"
    assert f"runs/{RUN}/rl" in json.dumps(isvc["spec"])


@pytest.mark.parametrize("path", PIPELINE.leaf_tasks())
def test_step_runs_in_its_images_environment(dag_run, path):
    result = result_of(dag_run, path)
    name = path.split("/")[-1]
    assert name in STEP_CHECKS, f"no output check for step {name}: add one to STEP_CHECKS"
    STEP_CHECKS[name](dag_run, result.outputs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_like_the_pod(job: dict, envs: dict[str, ContractEnv], home: Path) -> subprocess.CompletedProcess:
    """One node of the TrainJob: its command in the environment of its image, with the variables
    Kubeflow Trainer's torch runtime gives torchrun (one node, one process here)."""
    trainer = job["spec"]["trainer"]
    plain_env = {e["name"]: e["value"] for e in trainer.get("env", []) if "value" in e}
    env = envs[image_name(trainer["image"])].env(**plain_env)
    env.update(HOME=str(home), PET_NNODES="1", PET_NPROC_PER_NODE="1", PET_NODE_RANK="0",
               PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(free_port()))
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(trainer["command"], cwd=home, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def trainjob_run(envs, dag_run, tmp_path_factory, pytestconfig):
    """pretrain with ``training_launcher=trainjob``: the step sends a TrainJob to the in-memory API
    server; a scripted controller runs it as its pods would and reports it complete."""
    curate = result_of(dag_run, "curate")
    tmp = tmp_path_factory.mktemp("contract-trainjob")
    params = {**PARAMS, "store_root": dag_run.params["store_root"], "run_name": "contract-tj",
              "training_launcher": "trainjob", "cluster_overrides": ["training.poll_s=0.05"]}
    run = PipelineRun(PIPELINE, params, tmp / "pipeline-root", job_id="contract-tj-0001")
    run.results["curate"] = curate
    run.execute("placement", lambda image: envs[image_name(image)])
    pods: list[subprocess.CompletedProcess] = []
    jobs: list[dict] = []    # the TrainJob as the controller first read it
    info = JOB_KINDS["TrainJob"]

    def start(c, obj):
        jobs.append(obj)
        pods.append(run_like_the_pod(obj, envs, tmp / "pod-home"))
        name = obj["metadata"]["name"]
        add_pod(c, pod(f"{name}-node-0-0-abcde", NS, info.master_selector(name), container=info.container))
        c.logs[f"{name}-node-0-0-abcde"] = log_lines(0, 2, "step {i}")

    def done(c, obj):
        ok = pods and pods[-1].returncode == 0
        set_status(c, TRAINJOBS, obj, {"conditions": [
            condition("Complete", "JobComplete") if ok else condition("Failed", "PodFailed", "node 0 failed")]})

    with Cluster() as cluster:
        cluster.on_fetch(TRAINJOBS, start, done)
        kubeconfig = cluster.write_kubeconfig(tmp / "kubeconfig", namespace=NS)
        result = run.execute("pretrain", lambda image: envs[image_name(image)],
                             extra_env={"KUBECONFIG": str(kubeconfig)}, check=False)
        posts = cluster.requests("POST", TRAINJOBS)
        invalid = cluster.invalid_objects()
    report(pytestconfig, f"contract trainjob: pretrain step {result.seconds:.0f} s, its TrainJob's node run "
                         f"in the {image_name(jobs[0]['spec']['trainer']['image']) if jobs else '?'} env")
    return {"run": run, "result": result, "pods": pods, "posts": posts, "jobs": jobs, "invalid": invalid}


def test_pretrain_as_a_trainjob_sends_a_job_that_runs_in_the_train_image(trainjob_run):
    result = trainjob_run["result"]
    assert len(trainjob_run["posts"]) == 1 and trainjob_run["jobs"], \
        f"the step created no TrainJob (exit {result.returncode}):\n{result.tail()}"
    job = trainjob_run["jobs"][0]
    assert trainjob_run["invalid"] == []
    assert job["metadata"]["namespace"] == NS and job["spec"]["trainer"]["image"] == image_ref("train")
    # The step only launches: the slim base image, no GPU; the job's pods get the train image.
    assert result.image == image_ref("base") and image_name(result.image) == "base"
    pod = trainjob_run["run"].pod_spec("pretrain")
    assert pod["resources"]["limits"] == {"cpu": LAUNCHER_CPU, "memory": LAUNCHER_MEMORY}
    assert pod["nodeSelector"] == {} and pod["tolerations"] == []
    (node,) = trainjob_run["pods"]
    assert node.returncode == 0, f"the TrainJob's command failed in the train image's environment:\n" \
                                 f"{node.stdout[-3000:]}\n{node.stderr[-3000:]}"
    assert result.returncode == 0, f"pretrain (trainjob) failed:\n{result.tail()}"
    assert result.outputs["job"].metadata["kind"] == "TrainJob"
    assert result.outputs["job"].metadata["name"] == job["metadata"]["name"]
    store = open_store(trainjob_run["run"].params["store_root"])
    summary = json.loads(store.open_file("runs/contract-tj/pretrain", "training/summary.json"))
    assert summary["steps"] == 2
    assert result.outputs["model"].metadata["store_uri"].endswith("runs/contract-tj/pretrain")


def test_model_holding_steps_ran_in_the_train_image(dag_run):
    """In-process training and evaluation ran where placement put them: the CUDA train image
    (it runs on CPU too), with the tiny preset's sizes and no GPU."""
    for path in ("pretrain", "sft", "rl", "evaluate", "evaluate-2"):
        result = result_of(dag_run, path)
        assert result.image == image_ref("train"), path
        limits = dag_run.pod_spec(path)["resources"]["limits"]
        assert "nvidia.com/gpu" not in limits and limits["memory"] in ("4Gi", "2Gi"), (path, limits)
    assert result_of(dag_run, "curate").image == image_ref("base")


def test_7b_gpu_placement_gives_the_model_steps_gpus_and_the_gpu_pool(envs, dag_run, tmp_path):
    """The placement executor with preset=7b-gpu, and the pods the driver builds from its outputs:
    evaluate gets one GPU and memory for 15 GiB of bf16 weights, in-process training one node of
    8 GPUs; both on the GPU pool of configs/7b-gpu/cluster.yaml."""
    cfg = load_cluster_config("7b-gpu")
    run = PipelineRun(PIPELINE, {**dag_run.params, "preset": "7b-gpu"}, tmp_path / "root", job_id="contract-7b")
    run.results.update({k: v for k, v in dag_run.results.items() if k != "placement"})
    run.execute("placement", lambda image: envs[image_name(image)])
    evaluate = run.pod_spec("evaluate-2")
    assert evaluate["image"] == image_ref("train")
    assert evaluate["resources"]["limits"]["nvidia.com/gpu"] == "1"
    weights_gib = memory_plan(build_config("7b"), sharding="ddp", param_dtype="bfloat16").weights_bytes / 2**30
    memory_gib = float(evaluate["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert memory_gib >= weights_gib + 8, (memory_gib, weights_gib)   # weights pass through host memory
    assert evaluate["nodeSelector"] == cfg.training.node_selector and evaluate["tolerations"] == cfg.training.tolerations
    pretrain = run.pod_spec("pretrain")
    assert pretrain["resources"]["limits"]["nvidia.com/gpu"] == "8" and pretrain["image"] == image_ref("train")
    assert pretrain["resources"]["requests"]["memory"] == cfg.training.shape("pretrain").memory


def test_every_executor_ran_in_some_scenario(dag_run, trainjob_run):
    ran = {r.executor for r in dag_run.results.values()} | {trainjob_run["result"].executor}
    assert ran == set(PIPELINE.executors()), f"never run: {sorted(set(PIPELINE.executors()) - ran)}"


def core_only_requirements() -> str:
    """The project's core dependencies alone: an image that forgot the step's extras."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "images" / "requirements.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    pins = generator.read_constraints()
    return generator.render("core-only", generator.closure([Requirement("diffucoder")], pins))


def test_a_step_whose_image_lacks_a_module_fails(tmp_path):
    core = env_from_requirements(core_only_requirements(), "core-only")
    run = PipelineRun(PIPELINE, {**PARAMS, "store_root": (tmp_path / "store").as_uri()}, tmp_path / "root")
    result = run.execute("curate", lambda image: core, check=False)
    assert result.returncode != 0
    assert "No module named 'kfp'" in result.log, result.tail()
