"""RL rewards through the sandbox service: the 7b-gpu recipe refuses to score completions anywhere
else, the client gives the rewards the in-process pool gives, and a run records where its code ran."""
import json

import pytest

from diffucoder.config import load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.recipes.coupled_grpo import RLConfig, train_rl
from diffucoder.rl import RewardConfig, score_completions
from diffucoder.rl.report import KFP_METRIC_KEYS
from diffucoder.sandbox import Sandbox, SandboxClient, SandboxConfig, SandboxError, TestCase
from diffucoder.sandbox.client import ServiceError
from diffucoder.sandbox.service import SandboxService, ServiceConfig
from tests.rl.rl_trainer_helpers import make_model_dir, make_suite, micro_rl_config

ADD = "def add(a, b):\n    return a + b\n"
ANSWERS = [ADD, "def add(a, b):\n    return a - b\n", "import os\nos._exit(0)\n" + ADD,
           "def add(a, b):\n    while True:\n        pass\n"]


def fenced(code: str) -> str:
    return f"```python\n{code}```"


@pytest.fixture(scope="module")
def service():
    with SandboxService(SandboxConfig(timeout_s=5, memory_mb=512, workers=2),
                        ServiceConfig(host="127.0.0.1", port=0)) as svc:
        assert svc.wait_ready(60)
        yield svc


def test_the_7b_recipe_refuses_to_score_completions_in_its_own_pods(tmp_path):
    base = [f"model.init_from={tmp_path}/no-model", f"data.uri={tmp_path}/no-data"]  # never read: refused first
    cfg = load_config(RLConfig, recipe_path("7b-gpu", "rl"), [*base, "reward.sandbox.endpoint="])
    with pytest.raises(SandboxError) as refused:
        train_rl(cfg)
    print(f"\n7b-gpu rl without reward.sandbox.endpoint:\n  {refused.value}")
    assert "reward.sandbox.min_isolation is 'service'" in str(refused.value)
    assert "reward.sandbox.endpoint=http://diffucoder-sandbox:8080" in str(refused.value)
    cfg = load_config(RLConfig, recipe_path("7b-gpu", "rl"), base)   # as shipped: the chart's Service
    with pytest.raises(ServiceError, match="diffucoder-sandbox:8080 is unreachable") as refused:
        train_rl(cfg)
    print(f"7b-gpu rl, no sandbox service deployed:\n  {refused.value}")


@pytest.mark.integration
@pytest.mark.parametrize("test_runs", ["together", "each"])
def test_rewards_through_the_service_equal_the_in_process_rewards(service, test_runs):
    tests = "assert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(0, 0) == 0\n"
    cases = [TestCase(args=(1, 2), expected=3), TestCase(args=(2, 2), expected=4)]
    texts = [fenced(a) for a in ANSWERS] * 2 + ["no code block"]
    all_tests = [tests] * len(ANSWERS) + [cases] * len(ANSWERS) + [tests]
    entries = [None] * len(ANSWERS) + ["add"] * len(ANSWERS) + [None]
    cfg = RewardConfig(test_runs=test_runs, test_timeout_s=0.5)
    sandbox_cfg = SandboxConfig(timeout_s=0.5, memory_mb=512, workers=2)
    with Sandbox(sandbox_cfg) as pool:
        local = score_completions(pool, texts, all_tests, entries, cfg)
    with SandboxClient(service.url, sandbox_cfg, retry_s=5) as client:
        remote = score_completions(client, texts, all_tests, entries, cfg)
    assert remote == local
    assert [r.code for r in local[:4]] == [1.0, pytest.approx(1 / 3), 0.0, 0.0]
    assert local[-1].verdict == "not_run"


@pytest.mark.integration
def test_an_rl_run_through_the_service_records_where_its_code_ran(tmp_path, service):
    model, suite = make_model_dir(tmp_path / "sft"), make_suite(tmp_path / "tasks")
    served_before = sum(service.metrics.verdicts.values())
    cfg = micro_rl_config(model, suite, tmp_path / "w", steps=1,
                          extra=[f"reward.sandbox.endpoint={service.url}", "reward.sandbox.min_isolation=service",
                                 "reward.sandbox.retry_s=5"])
    result = train_rl(cfg)
    assert result.summary["sandbox_isolation"] == "service"
    assert result.summary["sandbox_isolation_level"] == 5
    assert result.summary["sandbox_inside"] == service.isolation
    assert result.summary["sandbox_endpoint"] == service.url
    assert "sandbox_isolation_level" in KFP_METRIC_KEYS
    assert sum(service.metrics.verdicts.values()) - served_before >= 5   # at least the start-up self-check
    saved = json.loads((result.model_dir / "training" / "summary.json").read_text())
    assert saved["sandbox_isolation"] == "service"
    assert "| sandbox_isolation | service |" in result.report_md
