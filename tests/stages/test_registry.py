"""The stage registry is the one list of stages: the CLI, the run plan, the pipeline's parameters
and the cluster jobs all follow it, and nothing else spells the stage order out."""
import ast
import inspect
from pathlib import Path

import pytest

from diffucoder import cli
from diffucoder.errors import DiffucoderError
from diffucoder.stages.registry import NAMES, START_STAGES, STAGES, TRAINING_STAGES, stage
from diffucoder_kfp.pipeline import diffucoder_pipeline

SRC = Path(__file__).resolve().parents[2] / "src"


def literals_naming_two_stages(path: Path) -> list[tuple[int, list[str]]]:
    """(line, names) of every list/tuple/set/dict literal holding two or more stage names; a
    ``Literal[...]`` type annotation (the values one config field accepts) is not a stage order."""
    tree = ast.parse(path.read_text())
    annotations = {id(n.slice) for n in ast.walk(tree)
                   if isinstance(n, ast.Subscript) and getattr(n.value, "id", "") == "Literal"}
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations:
            continue
        items = (node.elts if isinstance(node, (ast.List, ast.Tuple, ast.Set))
                 else [k for k in node.keys if k is not None] if isinstance(node, ast.Dict) else [])
        names = [e.value for e in items if isinstance(e, ast.Constant) and e.value in NAMES]
        if len(names) >= 2:
            found.append((node.lineno, names))
    return found


def test_no_module_but_the_registry_spells_out_the_stages():
    offenders = {str(p.relative_to(SRC)): hits for p in SRC.rglob("*.py")
                 if p.name != "registry.py" and (hits := literals_naming_two_stages(p))}
    assert offenders == {}


def test_the_scan_finds_a_stage_list_where_one_is_written(tmp_path):
    planted = tmp_path / "plan.py"
    planted.write_text('ORDER = ("curate", "pretrain", "sft")\nOK: Literal["pretrain", "sft"] = "sft"\n')
    assert literals_naming_two_stages(planted) == [(1, ["curate", "pretrain", "sft"])]


def test_order_and_roles():
    assert NAMES == ("curate", "pretrain", "midtrain", "sft", "rl", "evaluate", "deploy")
    assert START_STAGES == ("curate", "sft", "rl") and TRAINING_STAGES == ("pretrain", "midtrain", "sft", "rl")
    assert stage("rl").job_argv("7b-gpu") == ["rl", "train", "--preset", "7b-gpu"]
    assert stage("pretrain").job_argv("tiny-cpu") == ["pretrain", "--preset", "tiny-cpu"]
    with pytest.raises(DiffucoderError, match="not a training stage"):
        stage("curate").job_argv("tiny-cpu")
    with pytest.raises(DiffucoderError, match="not one of"):
        stage("finetune")
    # every training stage reads an artifact an earlier stage writes
    outputs = {s.output for s in STAGES} | {stage("sft").data_from}
    for s in STAGES:
        assert not s.data_from or s.data_from in outputs, s.name
        assert not s.init_from or NAMES.index(s.init_from) < NAMES.index(s.name), s.name


def test_the_cli_has_a_command_per_stage_that_has_one(capsys):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for s in STAGES:
        if s.cli:
            assert cli.COMMANDS[s.name][0] == s.cli
            assert f"    {s.name} " in listed
    assert "deploy" not in cli.COMMANDS   # its door is `diffucoder kube deploy`


def test_the_pipeline_has_an_overrides_parameter_per_stage():
    parameters = set(inspect.signature(diffucoder_pipeline.pipeline_func).parameters)
    assert {p for p in parameters if p.endswith("_overrides") and p != "cluster_overrides"} == \
        {f"{name}_overrides" for name in NAMES}


def test_kube_knows_nothing_of_the_stages():
    """kube/ is the Kubernetes layer under stages/: no import runs back up (no cycle)."""
    upward = []
    for path in (SRC / "diffucoder" / "kube").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            upward += [f"{path.name}: {n}" for n in names if n.startswith("diffucoder.stages")]
    assert upward == []
