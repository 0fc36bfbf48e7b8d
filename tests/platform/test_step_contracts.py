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
The pipeline compiled with ``--curate-pods`` runs its curation as KFP would: ``curate-plan``,
then each stage's ParallelFor fanned out over the plan's items (one ``curate-slice`` pod per
rank range, against the run's work directory in the ``file://`` store), then ``curate-publish``,
whose artifact must equal the single ``curate`` step's on the same input and recipe; and with
``start_stage=sft``, where every pod gets the empty slice and does nothing.
A step whose image lacks a module it imports fails here (``test_a_step_whose_image_lacks_a_module_fails``).

The environments are cached by requirements hash (``$DIFFUCODER_CONTRACT_CACHE``); a cold
cache builds them first (about a minute each, in parallel).
"""
from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement

from contract_envs import ROOT, ContractEnv, env_from_requirements, image_envs, image_name
from diffucoder import __version__
from diffucoder.data import TokenShards
from diffucoder.kube import JOB_KINDS
from diffucoder.kube.config import image_ref, load_cluster_config
from diffucoder.model import build_config, memory_plan
from diffucoder.store import open_store
from diffucoder_kfp.compile import compile_pipeline
from diffucoder_kfp.components.images import STEP_IMAGES
from diffucoder_kfp.pipeline import CURATE_STAGES
from diffucoder_kfp.placement import LAUNCHER_CPU, LAUNCHER_MEMORY
from kfp_emulation import POD_SPEC_PARAMETER, CompiledPipeline, PipelineRun, StepResult
from tests.checkout import COMPILED_DIR
from tests.data.data_corpora import near_copy, python_module
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


# --- the curation spread over pods (the pipeline compiled with --curate-pods) ----------------

CURATE_PODS = 2
# 3 tasks per per-document stage, 2 per pod: select, signatures and keep run as the slices
# 0:2 and 2:3; 24 permutations make 4 LSH bands, so buckets run as 0:2 and 2:4 (128 would
# make 7 pods of 10-20 s each here, mostly imports); exact and clusters one pod each. The single
# curate step gets the same recipe (its artifact is what the pods' must equal).
SPREAD = ["tasks=3", "spread.tasks_per_pod=2", "dedup.num_perm=24"]


@pytest.fixture(scope="module")
def pods_pipeline(tmp_path_factory) -> CompiledPipeline:
    return CompiledPipeline.load(compile_pipeline(tmp_path_factory.mktemp("curate-pods-ir"), curate_pods=CURATE_PODS))


def curate_loops(pipeline: CompiledPipeline) -> list[tuple[str, str]]:
    """(stage, ParallelFor task) of the pods pipeline, in DAG order."""
    return [(task.spec["taskInfo"]["name"].removeprefix("curate-"), task.path)
            for task in pipeline.ordered_tasks() if task.loop is not None]


def curate_corpus(root: Path) -> Path:
    """The contract corpus plus an exact and a near duplicate: the exact and clusters stages
    must find them across the slices of the stages before them."""
    corpus(root)
    (root / "mod_0.py").write_text(python_module(0))
    (root / "mod_0_copy.py").write_text(python_module(0))
    (root / "mod_1.py").write_text(python_module(1))
    (root / "zz_near_mod_1.py").write_text(near_copy(python_module(1)))
    return root


@pytest.fixture(scope="module")
def curate_pods_run(envs, pods_pipeline, tmp_path_factory, pytestconfig) -> dict:
    """The single curate step (default pipeline) and the pods pipeline's curate-plan, every
    stage's ParallelFor iterations and curate-publish, on one input and recipe, in the base
    image's environment, both publishing to one file:// store."""
    tmp = tmp_path_factory.mktemp("contract-curate-pods")
    params = {**PARAMS, "curate_overrides": [*PARAMS["curate_overrides"], *SPREAD],
              "store_root": (tmp / "store").as_uri(), "curate_input": str(curate_corpus(tmp / "corpus"))}

    def env_for(image):
        return envs[image_name(image)]

    single = PipelineRun(PIPELINE, {**params, "run_name": "contract-single"}, tmp / "single-root",
                         job_id="contract-single-0001")
    single.execute("curate", env_for)
    # run_name empty: every pod names the run by the job id, as on a cluster
    run = PipelineRun(pods_pipeline, {**params, "run_name": ""}, tmp / "pods-root", job_id="contract-pods-0001")
    run.execute("curate-plan", env_for)
    iterations = {stage: run.run_loop(loop, env_for) for stage, loop in curate_loops(pods_pipeline)}
    run.execute("curate-publish", env_for)
    report(pytestconfig, f"contract curate-pods: single curate {single.results['curate'].seconds:.0f} s; "
                         f"{sum(map(len, iterations.values()))} slice pods "
                         f"{sum(r.seconds for p, r in run.results.items() if '[' in p):.0f} s, "
                         f"plan + publish {run.results['curate-plan'].seconds + run.results['curate-publish'].seconds:.0f} s")
    return {"single": single, "run": run, "iterations": iterations}


def test_the_pods_pipeline_has_one_loop_per_stage_in_order(pods_pipeline):
    assert [stage for stage, _ in curate_loops(pods_pipeline)] == list(CURATE_STAGES)


def test_each_stage_ran_one_slice_pod_per_item_of_the_plan(curate_pods_run):
    """Every loop fanned out over its stage's items as curate-plan output them, in the base
    image, each pod sized by the plan and publishing its slice of the work directory."""
    run = curate_pods_run["run"]
    plan = run.results["curate-plan"].outputs
    assert plan["select"] == ["0:2", "2:3"] and plan["exact"] == ["0:1"] and plan["keep"] == ["0:2", "2:3"]
    assert plan["buckets"] == ["0:2", "2:4"] and plan["clusters"] == ["0:1"]
    work = f"runs/{run.job_id}/curate-work"
    published = open_store(run.params["store_root"]).list_artifacts(f"{work}/")
    assert len(published) == sum(len(plan[stage]) for stage in CURATE_STAGES)
    for stage, iterations in curate_pods_run["iterations"].items():
        assert len(iterations) == len(plan[stage]), stage
        for iteration, ranks in zip(iterations, plan[stage]):
            (path,) = [p for p in run.results if p.startswith(f"{iteration}/")]
            result = run.results[path]
            assert run.resolve(run.pipeline.task(path))[0]["ranks"] == ranks
            assert result.image == image_ref("base"), path
            assert f"[curate-{stage}] tasks {ranks} on a pod of cpu {plan[f'{stage}_cpu']}" in result.log
            a, b = map(int, ranks.split(":"))
            assert f"{work}/{stage}/{a:05d}-{b:05d}" in published, (stage, ranks)
            pod = run.pod_spec(path)
            size = {"cpu": plan[f"{stage}_cpu"], "memory": plan[f"{stage}_memory"]}
            assert pod["resources"] == {"requests": size, "limits": size}, path


def published_curation(run: PipelineRun, path: str, cache: Path) -> tuple[dict, dict, TokenShards]:
    """(the curated artifact's KFP metadata, its stats.json, the shards as pretrain opens them)."""
    metadata = dict(run.results[path].outputs["curated"].metadata)
    store, name = open_store(run.params["store_root"]), metadata["store_uri"].removeprefix(
        run.params["store_root"] + "/")
    stats = json.loads(store.open_file(name, "stats.json"))
    return metadata, stats, TokenShards.open(metadata["store_uri"], cache_dir=cache, verify=True)


def test_curate_publish_gives_pretrain_what_the_single_curate_step_gives(curate_pods_run, tmp_path):
    single, run = curate_pods_run["single"], curate_pods_run["run"]
    pods_meta, pods_stats, pods = published_curation(run, "curate-publish", tmp_path / "cache")
    one_meta, one_stats, one = published_curation(single, "curate", tmp_path / "cache")
    assert pods_meta["store_uri"] == f"{run.params['store_root']}/runs/{run.job_id}/curated"
    # what pretrain reads: shards.json, both splits' shards (sha256-checked above), the tokenizer
    for shards in (pods, one):
        assert (shards.root / "shards.json").is_file() and len(shards.train) > 0 and len(shards.val) > 0
        tokenizer = shards.load_tokenizer()
        assert tokenizer.convert_tokens_to_ids("<|mask|>") == shards.mask_id
    assert np.array_equal(pods.train[:], one.train[:]) and np.array_equal(pods.val[:], one.val[:])
    assert pods.index == one.index
    assert pods.load_tokenizer().get_vocab() == one.load_tokenizer().get_vocab()
    # the curation found the planted duplicates across slices, as the single run did
    assert one_stats["removed"]["dedup"]["exact_duplicate"] >= 1, one_stats["removed"]
    assert one_stats["removed"]["dedup"]["near_duplicate"] >= 1, one_stats["removed"]
    for key in ("read", "removed", "removed_bytes", "kept", "near_dedup", "decontam", "tokenizer", "pack"):
        assert pods_stats[key] == one_stats[key], key
    timing = "seconds_total"
    assert {**pods_meta, "store_uri": "", "metrics": {**pods_meta["metrics"], timing: 0}} == \
        {**one_meta, "store_uri": "", "metrics": {**one_meta["metrics"], timing: 0}}


def test_a_run_from_an_existing_model_passes_the_pods_curation_without_work(envs, pods_pipeline, tmp_path):
    """start_stage=sft on the pods pipeline (the tiny recipe as is: no fixed tasks needed when
    curation is skipped): every loop gets the one empty slice "0:0", its pod does nothing and
    reads no input (none exists), and curate-publish passes on the skipped reference."""
    store_root = (tmp_path / "store").as_uri()
    params = {**PARAMS, "start_stage": "sft", "store_root": store_root,
              "curate_input": str(tmp_path / "no-such-input")}
    run = PipelineRun(pods_pipeline, params, tmp_path / "root", job_id="contract-pods-sft")

    def env_for(image):
        return envs[image_name(image)]

    run.execute("curate-plan", env_for)
    for stage, loop in curate_loops(pods_pipeline):
        (iteration,) = run.run_loop(loop, env_for)
        (path,) = [p for p in run.results if p.startswith(f"{iteration}/")]
        assert run.resolve(run.pipeline.task(path))[0]["ranks"] == "0:0"
        assert "curation is skipped" in run.results[path].log, run.results[path].tail()
    publish = run.execute("curate-publish", env_for)
    assert publish.outputs["curated"].metadata["kind"] == "skipped"
    assert open_store(store_root).list_artifacts("") == []


def test_every_executor_of_the_curate_pods_pipeline_ran_in_some_scenario(pods_pipeline, dag_run, trainjob_run,
                                                                         curate_pods_run):
    """The pods pipeline's own executors ran above; the others are the default pipeline's, the
    same containers, which ran in the DAG run."""
    ran_default = {r.executor for r in dag_run.results.values()} | {trainjob_run["result"].executor}
    ran_pods = {r.executor for r in curate_pods_run["run"].results.values()}
    default = PIPELINE.ir["deploymentSpec"]["executors"]
    for label, spec in pods_pipeline.ir["deploymentSpec"]["executors"].items():
        if label not in ran_pods:
            assert label in ran_default and spec == default[label], f"never run: {label}"
    assert {"exec-curate-plan", "exec-curate-publish"} <= ran_pods
    assert sum(label.startswith("exec-curate-slice") for label in ran_pods) == len(CURATE_STAGES)


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
