"""Unit, compile and local-runner tests of the curate component."""
import json
import textwrap

import pytest
from kfp import local

from diffucoder.store import resolve
from diffucoder_kfp.components.curate import curate, curate_plan, curate_publish, curate_slice
from diffucoder_kfp.pipeline import CURATE_STAGES
from diffucoder_kfp.components.images import BASE_IMAGE
from diffucoder_kfp.components.testing import compile_component


def test_component_interface_is_typed():
    spec = curate.component_spec
    assert set(spec.inputs) == {"preset", "input_uri", "store_root", "run_name", "run_id", "overrides",
                                "start_stage"}
    assert {name: out.type for name, out in spec.outputs.items()} == {
        "curated": "system.Dataset@0.0.1", "metrics": "system.Metrics@0.0.1",
        "report": "system.Markdown@0.0.1"}
    assert spec.implementation.container.image == BASE_IMAGE


def test_component_compiles(tmp_path):
    ir, executor = compile_component(curate, tmp_path)
    assert executor["container"]["image"] == BASE_IMAGE
    assert "run_curate_stage" in " ".join(executor["container"]["command"])


def _tiny_corpus(root):
    root.mkdir()
    for i in range(12):
        (root / f"mod{i}.py").write_text(textwrap.dedent(f"""
            def function_{i}(values):
                '''Return the running total of values, module {i}.'''
                total = {i}
                out = []
                for value in values:
                    total += value * {i + 1}
                    out.append(total)
                return out


            class Helper{i}:
                def __init__(self, name):
                    self.name = name + "{i}"

                def describe(self):
                    return f"helper {{self.name}} number {i}"
            """))
    return root


@pytest.mark.integration
def test_runs_on_the_local_runner(tmp_path):
    corpus = _tiny_corpus(tmp_path / "corpus")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    task = curate(preset="tiny-cpu", input_uri=str(corpus), store_root=(tmp_path / "store").as_uri(),
                  run_name="t1", run_id="job-1",
                  overrides=["tokenizer.vocab_size=300", "pack.seq_len=32", "pack.val_fraction=0.1",
                             "decontam.enabled=false"], start_stage="curate")
    ref = json.loads((tmp_path / "kfp").glob("*/curate/curated/artifact-ref.json").__next__().read_text())
    assert ref["uri"] == (tmp_path / "store").as_uri() + "/runs/t1/curated"
    assert task.outputs["curated"].metadata["store_uri"] == ref["uri"]
    report = next((tmp_path / "kfp").glob("*/curate/report"))
    assert "near" in report.read_text().lower()
    store, name = resolve(ref["uri"])
    assert store.has_artifact(name)


def test_spread_components_are_typed():
    assert set(curate_plan.component_spec.inputs) == {"preset", "input_uri", "overrides", "start_stage"}
    outputs = curate_plan.component_spec.outputs
    for stage in CURATE_STAGES:
        assert outputs[stage].type == "List" and outputs[f"{stage}_cpu"].type == "String"
    assert set(curate_slice.component_spec.inputs) >= {"stage", "ranks", "store_root", "run_id", "start_stage"}
    assert set(curate_publish.component_spec.outputs) == set(curate.component_spec.outputs)
