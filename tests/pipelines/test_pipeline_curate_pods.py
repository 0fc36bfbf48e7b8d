"""The pipeline compiled with ``--curate-pods``: a ParallelFor per datatrove stage over its pods,
the stages in order, then one publish step whose output the rest of the DAG consumes."""
import pytest
import yaml
from kfp import compiler

from diffucoder.data.trove import STAGES, parse_ranks, stage_plan
from diffucoder.errors import DiffucoderError
from diffucoder.stages.curate import _config, curate_slice_plan
from diffucoder_kfp.compile import compile_pipeline, compiled_filename, read_ir, retarget
from diffucoder_kfp.pipeline import CURATE_STAGES, build_pipeline

PODS = 48


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = compile_pipeline(tmp_path_factory.mktemp("ir"), curate_pods=PODS)
    assert path.name == compiled_filename(curate_pods=PODS) and "curate-pods" in path.name
    ir, platform = yaml.safe_load_all(path.read_text())
    return ir, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], path


def test_the_pipeline_keeps_the_stage_list_of_the_engine():
    assert CURATE_STAGES == STAGES


def test_one_loop_per_stage_in_order_then_publish(compiled):
    ir, _, _ = compiled
    tasks = ir["root"]["dag"]["tasks"]
    assert "curate" not in tasks                      # the single step is replaced, not kept beside
    loops = {t["taskInfo"]["name"]: name for name, t in tasks.items() if "parameterIterator" in t}
    assert sorted(loops) == sorted(f"curate-{s}" for s in STAGES)    # their order: the chain below
    previous = "curate-plan"
    for stage in STAGES:
        loop = tasks[loops[f"curate-{stage}"]]
        # every stage waits for the one before it (the first for the plan)
        assert previous in loop["dependentTasks"], stage
        assert loop["iteratorPolicy"] == {"parallelismLimit": PODS}
        items = loop["parameterIterator"]["items"]["inputParameter"]
        assert loop["inputs"]["parameters"][items]["taskOutputParameter"] == {
            "producerTask": "curate-plan", "outputParameterKey": stage}
        previous = loops[f"curate-{stage}"]
    publish = tasks["curate-publish"]
    assert publish["dependentTasks"] == [loops["curate-keep"]]
    # the rest of the DAG reads the publish step's artifact, as it reads curate's otherwise
    for consumer in ("pretrain", "midtrain"):
        assert tasks[consumer]["inputs"]["artifacts"]["curated"]["taskOutputArtifact"] == {
            "outputArtifactKey": "curated", "producerTask": "curate-publish"}


def test_each_pod_gets_its_stage_ranks_run_and_size_from_the_plan(compiled):
    ir, executors, _ = compiled
    tasks = ir["root"]["dag"]["tasks"]
    for name, loop in tasks.items():
        if "parameterIterator" not in loop:
            continue
        stage = loop["taskInfo"]["name"].removeprefix("curate-")
        (inner,) = ir["components"][loop["componentRef"]["name"]]["dag"]["tasks"].values()
        params = inner["inputs"]["parameters"]
        assert params["stage"] == {"runtimeValue": {"constant": stage}}
        assert params["ranks"] == {"componentInputParameter": loop["parameterIterator"]["itemInput"]}
        assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
        for key in ("preset", "store_root", "run_name", "overrides", "start_stage"):
            assert params[key] == {"componentInputParameter": f"pipelinechannel--{key if key != 'overrides' else 'curate_overrides'}"}, key
        assert params["input_uri"] == {"componentInputParameter": "pipelinechannel--curate_input"}
        assert params["pod_cpu"] == {"componentInputParameter": f"pipelinechannel--curate-plan-{stage}_cpu"}
        assert inner["retryPolicy"]["maxRetryCount"] == 2
        label = ir["components"][inner["componentRef"]["name"]]["executorLabel"]
        container = ir["deploymentSpec"]["executors"][label]["container"]
        assert container["resources"]["resourceCpuRequest"] == \
            f"{{{{$.inputs.parameters['pipelinechannel--curate-plan-{stage}_cpu']}}}}"
        assert container["resources"]["resourceMemoryLimit"] == \
            f"{{{{$.inputs.parameters['pipelinechannel--curate-plan-{stage}_memory']}}}}"
        assert "run_curate_slice" in " ".join(container["command"])
        (secret,) = executors[label]["secretAsEnv"]            # every pod reads and writes the store
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("store_secret")


def test_the_default_pipeline_keeps_one_curate_step(tmp_path):
    compiler.Compiler().compile(build_pipeline(), str(tmp_path / "p.yaml"))
    ir = read_ir(tmp_path / "p.yaml")[0]
    tasks = ir["root"]["dag"]["tasks"]
    assert "curate" in tasks and "curate-plan" not in tasks
    assert not any("parameterIterator" in t for t in tasks.values())
    with pytest.raises(DiffucoderError, match="curate_pods"):
        build_pipeline(curate_pods=-1)


def test_the_pods_pipeline_moves_to_another_registry(compiled):
    _, _, path = compiled
    docs = retarget(read_ir(path), "registry.example.com/ml", ["regcred"])
    images = {e["container"]["image"] for e in docs[0]["deploymentSpec"]["executors"].values()}
    assert all(i.startswith("registry.example.com/ml/") or i.startswith("{{$") for i in images), images


def test_the_plan_covers_every_rank_of_every_stage_once():
    plan = curate_slice_plan("7b-gpu", "", [], "curate")
    cfg = _config("7b-gpu", "", [])
    tasks = dict(stage_plan(cfg, 1))
    for stage in STAGES:
        covered = [r for item in plan[stage] for r in parse_ranks(item)]
        assert covered == list(range(tasks[stage])), stage
        per_pod = max(len(parse_ranks(i)) for i in plan[stage])
        assert per_pod <= cfg.spread.tasks_per_pod
    assert len(plan["select"]) == 4096 // cfg.spread.tasks_per_pod
    assert plan["select_cpu"] == str(cfg.spread.workers_per_pod)
    assert plan["clusters_cpu"] == "1" and plan["clusters_memory"] == cfg.spread.single_task_memory
    # a stage the recipe skips, and a run that starts after curation: one empty slice each
    assert curate_slice_plan("7b-gpu", "", ["dedup.exact=false"])["exact"] == ["0:0"]
    assert all(curate_slice_plan("7b-gpu", "", [], "rl")[s] == ["0:0"] for s in STAGES)
    # a run from an existing model needs no spread recipe (tiny-cpu has no fixed tasks)
    assert all(curate_slice_plan("tiny-cpu", "", [], "sft")[s] == ["0:0"] for s in STAGES)


def test_the_plan_refuses_a_recipe_without_fixed_tasks():
    with pytest.raises(DiffucoderError, match=r"fixed number of tasks .*tasks=0"):
        curate_slice_plan("tiny-cpu", "", [], "curate")
