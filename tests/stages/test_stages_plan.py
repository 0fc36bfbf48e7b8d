"""Starting a run from an existing model: which steps train, and what a skipped step passes on."""
import json

import pytest

from diffucoder.errors import DiffucoderError
from diffucoder.stages.curate import run_curate_stage
from diffucoder.stages.plan import check_start, passthrough_model, trains
from diffucoder.stages.pretrain import run_pretrain_stage
from diffucoder.stages.sft import run_sft_stage
from diffucoder.stages.training import recipe_config, wiring
from diffucoder.recipes.masked_diffusion import TrainConfig
from diffucoder.store import open_store
from tests.rl.rl_trainer_helpers import make_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("plan") / "instruct")


def test_which_stages_train_for_each_start():
    assert [s for s in ("curate", "pretrain", "sft", "rl") if trains(s, "curate")] == ["curate", "pretrain", "sft", "rl"]
    assert [s for s in ("curate", "pretrain", "sft", "rl") if trains(s, "sft")] == ["sft", "rl"]
    assert [s for s in ("curate", "pretrain", "sft", "rl") if trains(s, "rl")] == ["rl"]
    with pytest.raises(DiffucoderError, match="start_stage: must be one of"):
        check_start("pretrain", "s3://m")
    with pytest.raises(DiffucoderError, match="start_model: required"):
        check_start("rl", "")
    check_start("curate", "")


def test_passthrough_checks_the_start_model(tmp_path, model_dir):
    store = open_store(tmp_path / "store")
    with pytest.raises(DiffucoderError, match="no published artifact"):
        passthrough_model(store.uri("models/absent"), "pretrain", "rl")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not a model")
    store.put_artifact("models/notes", tmp_path / "notes")
    with pytest.raises(DiffucoderError, match="not a model"):
        passthrough_model(store.uri("models/notes"), "pretrain", "rl")
    store.put_artifact("models/instruct", model_dir)
    out = passthrough_model(store.uri("models/instruct"), "pretrain", "rl")
    assert out.uri == store.uri("models/instruct") and out.metadata["imported"] is True
    assert "skipped" in out.report_md and "start_stage" in out.report_md


def test_a_run_from_an_instruct_model_skips_curate_pretrain_and_sft_training(tmp_path, model_dir):
    store = open_store(tmp_path / "store")
    store.put_artifact("models/instruct", model_dir)
    root, start = store.uri(""), store.uri("models/instruct")
    curated = run_curate_stage("tiny-cpu", str(tmp_path / "no-such-corpus"), root, "r1", start_stage="rl")
    assert curated.uri == "" and curated.metadata["kind"] == "skipped"
    pretrained = run_pretrain_stage("tiny-cpu", curated.uri, root, "r1", start_stage="rl", start_model=start)
    assert pretrained.uri == start and not store.has_artifact("runs/r1/pretrain")
    tuned = run_sft_stage("tiny-cpu", pretrained.uri, root, "r1", overrides=["tasks.max_per_family=1"],
                          start_stage="rl")
    assert tuned.uri == start and not store.has_artifact("runs/r1/sft")
    assert tuned.metadata["tasks_uri"] == store.uri("runs/r1/tasks")   # RL and evaluate still get the suite
    heldout = store.open_file("runs/r1/tasks", "tasks-heldout.jsonl").decode().splitlines()
    assert heldout and "instruction" in json.loads(heldout[0])


class RecordingLauncher:
    """Stands in for ClusterLauncher: records what the stage would launch."""

    def __init__(self):
        self.calls = []

    def run(self, stage, preset, **kwargs):
        self.calls.append((stage, preset, kwargs))
        from diffucoder.stage_io import StageOutput
        return StageOutput(uri="s3://diffucoder/runs/r2/pretrain")


def test_start_model_is_what_adaptation_starts_from_and_an_explicit_override_wins():
    launcher = RecordingLauncher()
    run_pretrain_stage("tiny-cpu", "s3://diffucoder/runs/r2/curated", "s3://diffucoder", "r2",
                       start_model="s3://models/qwen2.5-coder", launcher=launcher)
    run_pretrain_stage("tiny-cpu", "s3://diffucoder/runs/r2/curated", "s3://diffucoder", "r2",
                       start_model="s3://models/qwen2.5-coder", overrides=["model.init_from='s3://models/other'"],
                       launcher=launcher)
    (stage, preset, first), (_, _, second) = launcher.calls
    assert (stage.name, preset) == ("pretrain", "tiny-cpu")

    def recipe(call):   # what the job's own CLI resolves from what the launcher was given
        values = wiring(stage, store_root=call["store_root"], run_name=call["run_name"],
                        data_uri=call["data_uri"], init_from=call["init_from"])
        return recipe_config(TrainConfig, preset, stage, values, call["overrides"])

    assert recipe(first).model.init_from == "s3://models/qwen2.5-coder"
    assert recipe(second).model.init_from == "s3://models/other"   # the explicit override wins