"""Where evaluate runs the answers: the 7b-gpu preset refuses to run them anywhere but the sandbox
service, and a run through the service reports that it ran there (report, metrics.json, KFP)."""
import json

import pytest

from diffucoder.config import load_config
from diffucoder.evaluation import EvaluateConfig, evaluate, load_benchmark
from diffucoder.sandbox import SandboxConfig, SandboxError
from diffucoder.sandbox.client import ServiceError
from diffucoder.sandbox.service import SandboxService, ServiceConfig
from diffucoder.stages.evaluate import run_evaluate_stage
from diffucoder.store import open_store
from tests.evaluation.evaluation_helpers import OracleSamplerDouble

# The preset as shipped, minus what needs the network (EvalPlus downloads): the synthetic tasks.
OFFLINE = ["benchmarks=[{name: synthetic}]", "gate_benchmark=''", "max_tasks=2"]


def run_7b(tmp_path, extra):
    store = f"file://{tmp_path / 'store'}"
    # the model does not exist: the sandbox must refuse before anything tries to load it
    return store, lambda: run_evaluate_stage("7b-gpu", f"file://{tmp_path}/no-model", store, "r1",
                                             overrides=[*OFFLINE, *extra], progress=False)


def test_the_7b_preset_refuses_to_run_answers_in_the_step_pod(tmp_path):
    store, run = run_7b(tmp_path, ["sandbox.endpoint="])
    with pytest.raises(SandboxError) as refused:
        run()
    message = str(refused.value)
    print(f"\n7b-gpu evaluate without sandbox.endpoint:\n  {message}")
    assert "refusing to run model-written code under 'bwrap'" in message
    assert "sandbox.min_isolation is 'service'" in message
    assert "sandbox.endpoint is empty" in message and "sandbox.endpoint=http://diffucoder-sandbox:8080" in message
    assert not open_store(store).has_artifact("runs/r1/evaluate")


def test_the_7b_preset_without_a_reachable_service_fails_closed(tmp_path):
    _, run = run_7b(tmp_path, [])   # as shipped: http://diffucoder-sandbox:8080, which does not exist here
    with pytest.raises(ServiceError) as refused:
        run()
    print(f"\n7b-gpu evaluate, no sandbox service deployed:\n  {refused.value}")
    assert "http://diffucoder-sandbox:8080 is unreachable" in str(refused.value)
    assert "cannot resolve 'diffucoder-sandbox'" in str(refused.value)


@pytest.mark.integration
def test_answers_run_in_the_service_and_the_reports_say_so(tmp_path):
    with SandboxService(SandboxConfig(timeout_s=60, workers=2), ServiceConfig(host="127.0.0.1", port=0)) as service:
        assert service.wait_ready(60)
        cfg = load_config(EvaluateConfig, None, ["max_tasks=3", "limits.time_floor_s=1.0", f"sandbox.endpoint={service.url}",
                                                 "sandbox.min_isolation=service", "sandbox.retry_s=5"])
        problems = [p for spec in cfg.benchmarks for p in load_benchmark(spec, cfg).problems]
        result = evaluate(cfg, None, tmp_path, completer=OracleSamplerDouble(problems), progress=False)
        served = service.metrics.verdicts["pass"]
    assert result.pass_at_1 == 1.0
    assert served >= 2 * 3      # each task's reference and its answer ran in the service
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["isolation"] == "service"
    assert saved["sandbox"] == {"isolation": "service", "inside": "bwrap", "endpoint": service.url}
    assert result.kfp_metrics["sandbox_isolation_level"] == 5.0
    report = (tmp_path / "report.md").read_text()
    assert f"sandbox isolation: **service** (the sandbox service at {service.url}, jobs under bwrap there)" in report


@pytest.mark.integration
def test_a_local_run_reports_its_layer(tmp_path):
    cfg = load_config(EvaluateConfig, None, ["max_tasks=1", "limits.time_floor_s=1.0", "limits.workers=1"])
    problems = [p for spec in cfg.benchmarks for p in load_benchmark(spec, cfg).problems]
    result = evaluate(cfg, None, tmp_path, completer=OracleSamplerDouble(problems), progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["sandbox"] == {"isolation": "bwrap"}
    assert result.kfp_metrics["sandbox_isolation_level"] == 4.0
