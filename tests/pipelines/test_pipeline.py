"""The compiled, versioned pipeline: in sync with the code, loadable, typed."""
import yaml
from kfp import components

from diffucoder import __version__
from diffucoder.stages.registry import NAMES, TRAINING_STAGES
from diffucoder_kfp.compile import compile_pipeline, compiled_filename, version_name
from tests.checkout import COMPILED_DIR


def test_committed_compiled_yaml_is_in_sync_with_the_code(tmp_path):
    fresh = compile_pipeline(tmp_path)
    committed = COMPILED_DIR / fresh.name
    assert committed.is_file(), f"run `make compile` and commit {committed}"
    assert list(yaml.safe_load_all(committed.read_text())) == list(yaml.safe_load_all(fresh.read_text())), \
        f"{committed} is stale: run `make compile` and commit it"


def test_file_and_version_names_carry_the_package_version():
    assert compiled_filename() == f"diffucoder-{__version__}.yaml"
    name = version_name(with_revision=True)
    assert name.startswith(f"{__version__}+g") and len(name) > len(__version__) + 2


def _compiled() -> tuple[dict, dict]:
    ir, platform = yaml.safe_load_all((COMPILED_DIR / compiled_filename()).read_text())
    return ir, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_compiled_pipeline_loads_with_kfp_and_has_typed_curate_step():
    path = COMPILED_DIR / compiled_filename()
    pipeline = components.load_component_from_file(str(path))
    assert pipeline.name == "diffucoder"
    ir, _ = _compiled()
    tasks = ir["root"]["dag"]["tasks"]
    assert "curate" in tasks
    outputs = ir["components"]["comp-curate"]["outputDefinitions"]["artifacts"]
    assert outputs["curated"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.Markdown"
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert {"preset", "store_root", "curate_input", "curate_overrides"} <= set(params)
    assert not tasks["curate"]["cachingOptions"].get("enableCache", False)  # off for curate


def test_the_dag_is_placement_curate_pretrain_midtrain_sft_rl_evaluate_then_a_gated_deploy():
    ir, _ = _compiled()
    tasks = ir["root"]["dag"]["tasks"]
    after = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert after["placement"] == set() and after["curate"] == set()
    assert after["pretrain"] == {"curate", "placement"} and after["midtrain"] == {"pretrain", "curate", "placement"}
    assert after["sft"] == {"midtrain", "placement"}
    assert after["rl"] == {"sft", "placement"}
    shown = {name: task["taskInfo"]["name"] for name, task in tasks.items()}
    evaluate_sft, evaluate_rl = (n for n in tasks if shown[n] in ("evaluate-sft", "evaluate-rl"))
    assert shown[evaluate_sft] == "evaluate-sft" and after[evaluate_sft] == {"sft", "placement"}
    assert shown[evaluate_rl] == "evaluate-rl" and after[evaluate_rl] == {"rl", "sft", "placement"}
    gate = next(t for t in tasks.values() if "triggerPolicy" in t)
    assert gate["taskInfo"]["name"] == "deploy-gate"
    condition = gate["triggerPolicy"]["condition"]
    assert f"{evaluate_rl}-Output" in condition and ">=" in condition and "deploy_min_pass_at_1" in condition
    gated = ir["components"][gate["componentRef"]["name"]]["dag"]["tasks"]
    assert list(gated) == ["deploy"]
    model_input = gated["deploy"]["inputs"]["artifacts"]["model"]
    assert model_input["componentInputArtifact"].endswith("rl-rl_model")   # the RL model is deployed


def test_every_step_has_caching_off_limits_and_the_store_secret():
    ir, executors = _compiled()
    steps = {**ir["root"]["dag"]["tasks"], **next(c["dag"]["tasks"] for c in ir["components"].values()
                                                  if "dag" in c and "deploy" in c["dag"]["tasks"])}
    steps = {name: t for name, t in steps.items() if "componentRef" in t and "triggerPolicy" not in t}
    assert len(steps) == 9   # placement, curate, pretrain, midtrain, sft, evaluate x2, rl, deploy
    for name, task in steps.items():
        assert not task.get("cachingOptions", {}).get("enableCache", False), name
        executor = ir["components"][task["componentRef"]["name"]]["executorLabel"]
        resources = ir["deploymentSpec"]["executors"][executor]["container"]["resources"]
        assert resources.get("resourceCpuLimit") and resources.get("resourceMemoryLimit"), name
        if name == "placement":   # reads the preset only: no store credentials
            assert "secretAsEnv" not in executors.get(executor, {})
            continue
        (secret,) = executors[executor]["secretAsEnv"]
        assert {k["envVar"] for k in secret["keyToEnv"]} >= {"AWS_ACCESS_KEY_ID", "DIFFUCODER_S3_ENDPOINT"}
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("store_secret")
        holds_a_model = name not in ("curate", "deploy")
        placed = executors[executor].get("nodeSelector", {}).get("nodeSelectorJson", {})
        assert (placed.get("taskOutputParameter", {}).get("producerTask") == "placement") == holds_a_model, name
    assert "retryPolicy" not in steps["deploy"]              # acts on the cluster: no blind retries
    assert steps["rl"]["retryPolicy"]["maxRetryCount"] >= 1  # resumes from its checkpoints


def test_model_holding_steps_take_image_gpus_memory_and_pool_from_placement():
    """Each resource of a model-holding step is the placement step's output for it, as the KFP
    driver reads them (initPodSpecPatch: the whole field is one parameter, read as a string)."""
    ir, executors = _compiled()
    tasks = ir["root"]["dag"]["tasks"]
    placement_outputs = ir["components"]["comp-placement"]["outputDefinitions"]["parameters"]
    shown = {name: task["taskInfo"]["name"] for name, task in tasks.items()}
    training = [(name, name) for name in TRAINING_STAGES]
    for name, step in (*training, *((n, "evaluate") for n in tasks if shown[n].startswith("evaluate-"))):
        label = ir["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        container = ir["deploymentSpec"]["executors"][label]["container"]
        def channel(field: str, step: str = step) -> str:
            return "{{$.inputs.parameters['pipelinechannel--placement-%s_%s']}}" % (step, field)
        assert container["image"] == channel("image"), name
        res = container["resources"]
        assert res["accelerator"] == {"resourceType": channel("accelerator"),
                                      "resourceCount": channel("gpus")}, name
        assert res["resourceCpuLimit"] == res["resourceCpuRequest"] == channel("cpu"), name
        assert res["resourceMemoryLimit"] == res["resourceMemoryRequest"] == channel("memory"), name
        for field in ("image", "accelerator", "gpus", "cpu", "memory"):
            assert tasks[name]["inputs"]["parameters"][f"pipelinechannel--placement-{step}_{field}"] == {
                "taskOutputParameter": {"outputParameterKey": f"{step}_{field}", "producerTask": "placement"}}
            assert placement_outputs[f"{step}_{field}"]["parameterType"] == "STRING", field
        (toleration,) = executors[label]["tolerations"]
        assert toleration["tolerationJson"]["taskOutputParameter"]["outputParameterKey"] == f"{step}_tolerations"
    for name in TRAINING_STAGES:   # the job a launcher sends runs the registry's train image
        assert tasks[name]["inputs"]["parameters"]["job_image"] == {
            "taskOutputParameter": {"outputParameterKey": "job_image", "producerTask": "placement"}}
    placement = tasks["placement"]["inputs"]["parameters"]
    assert placement["launcher"] == {"componentInputParameter": "training_launcher"}
    assert placement["midtrain"] == {"componentInputParameter": "midtrain"}
    assert placement["start_stage"] == {"componentInputParameter": "start_stage"}
    assert placement["image_registry"]["runtimeValue"]["constant"] == "ghcr.io/diffucoder-platform"


def test_pipeline_parameters_cover_every_stage_and_the_start_and_launch_choices():
    ir, _ = _compiled()
    params = ir["root"]["inputDefinitions"]["parameters"]
    for stage in NAMES:
        assert f"{stage}_overrides" in params
    assert params["midtrain"]["defaultValue"] is False and params["midtrain_data"]["defaultValue"] == ""
    assert params["start_stage"]["defaultValue"] == "curate" and params["start_model"]["defaultValue"] == ""
    assert params["training_launcher"]["defaultValue"] == "in-process"
    assert params["deploy_min_pass_at_1"]["parameterType"] == "NUMBER_DOUBLE"
    assert params["store_secret"]["defaultValue"] == "diffucoder-s3"
    assert params["step_node_selector"]["parameterType"] == "STRUCT"
    assert params["step_tolerations"]["parameterType"] == "LIST"
