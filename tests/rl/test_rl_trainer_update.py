"""The GRPO update on real rollouts of a micro model: direction, inner iterations, zero advantage."""
import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from diffucoder.model import load_model
from diffucoder.rl.estimator import EstimatorConfig, completion_mask, estimator_passes
from diffucoder.rl.prompts import read_prompts
from diffucoder.rl.rollouts import generate_rollouts
from diffucoder.recipes.coupled_grpo import batch_logprobs, estimator_variance, grpo_update
from diffucoder.sampling import load_tokenizer
from diffucoder.training.distributed import init_distributed
from diffucoder.training.engines import build_engine
from tests.rl.rl_trainer_helpers import make_model_dir, make_suite, micro_rl_config


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("rl-update")
    model_dir, suite = make_model_dir(root / "sft"), make_suite(root / "tasks")
    tokenizer = load_tokenizer(model_dir)
    prompts, _ = read_prompts(suite / "tasks-train.jsonl", "synthetic")
    model = load_model(model_dir)
    end_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|dlm_pad|>")]
    cfg = micro_rl_config(model_dir, suite, root / "w")
    batch = generate_rollouts(model, tokenizer, prompts[:2], 2, cfg.rollout.sampling,
                              torch.Generator().manual_seed(0), end_ids)
    return model_dir, suite, root, model, batch


def _setup(assets, extra=()):
    model_dir, suite, root, model, batch = assets
    cfg = micro_rl_config(model_dir, suite, root / "w", extra=["optim.weight_decay=0", *extra])
    policy = copy.deepcopy(model).train()
    torch.manual_seed(0)
    engine = build_engine(policy, init_distributed("none"), backend="none", optim=cfg.engine_optim(),
                          layout=cfg.layout(1))
    return cfg, engine, batch


def _sequence_logp(model, batch, mask_id) -> torch.Tensor:
    """Deterministic per-row log-likelihood (full-mask estimator)."""
    est = EstimatorConfig(method="full_mask")
    passes = estimator_passes(batch.mask, est, torch.Generator().manual_seed(0))
    return batch_logprobs(model, batch, passes, est, mask_id, batch.rows).sum(dim=1)


def test_update_moves_likelihood_towards_positive_advantage(assets):
    cfg, engine, batch = _setup(assets, ["objective.beta=0", "objective.mu=1", "optim.lr=3e-3"])
    mask_id = engine.module.config.mask_token_id
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    before = _sequence_logp(engine.module, batch, mask_id)
    stats = grpo_update(engine, None, batch, advantages, cfg.objective, mask_id, [7], micro=2)
    after = _sequence_logp(engine.module, batch, mask_id)
    change = after - before
    assert change[advantages > 0].mean() > change[advantages < 0].mean()
    assert stats["grad_norm"] > 0 and stats["kl"] == 0.0
    # one iteration: old log-probs are the policy's own, so rho is 1 and nothing is clipped
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and stats["clip_fraction"] == 0.0
    assert stats["logp_var"] > 0      # an extra mask draw measures the estimator's noise


def test_old_logprobs_are_taken_once_before_the_updates(assets):
    # With mu=2, the second iteration's ratio compares the updated policy with the old one:
    # a large step and a tight clip make it leave [1 - eps, 1 + eps]. Were the old log-probs
    # recomputed after the first update, rho would stay 1 and nothing would be clipped.
    cfg, engine, batch = _setup(assets, ["objective.beta=0", "objective.mu=2", "optim.lr=3e-2",
                                         "objective.eps=0.001", "optim.clip=0"])
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    stats = grpo_update(engine, None, batch, advantages, cfg.objective, engine.module.config.mask_token_id, [3, 4], micro=4)
    assert stats["clip_fraction"] > 0 and stats["ratio_mean"] != pytest.approx(1.0, abs=1e-6)
    assert engine.scheduler.last_epoch == 2    # mu optimizer steps


def test_all_equal_rewards_leave_the_weights_untouched(assets):
    cfg, engine, batch = _setup(assets, ["objective.beta=0", "objective.mu=2"])
    before = {k: v.clone() for k, v in engine.module.state_dict().items()}
    stats = grpo_update(engine, None, batch, torch.zeros(batch.rows), cfg.objective, engine.module.config.mask_token_id,
                        [1, 2], micro=2)
    assert stats["grad_norm"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in engine.module.state_dict().items())


def test_kl_to_the_reference(assets):
    cfg, engine, batch = _setup(assets, ["objective.beta=0.5", "objective.mu=1"])
    mask_id = engine.module.config.mask_token_id
    same = copy.deepcopy(engine.module).eval()
    stats = grpo_update(engine, same, batch, torch.zeros(batch.rows), cfg.objective, mask_id, [5], micro=4)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6) and stats["grad_norm"] < 1e-3
    other = copy.deepcopy(engine.module).eval()
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.05 * torch.randn_like(param))
    stats = grpo_update(engine, other, batch, torch.zeros(batch.rows), cfg.objective, mask_id, [5], micro=4)
    assert stats["kl"] > 1e-4 and stats["grad_norm"] > 0     # the KL alone pulls towards the reference


def test_estimator_variance_is_across_draws():
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    draws = [torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]]), torch.tensor([[3.0, 1.0], [4.0, 0.0], [0.0, 0.0]])]
    # row sums (2, 4) and (2, 4): variance 2 and 2; the empty third row is left out
    assert estimator_variance(draws, mask) == pytest.approx(2.0)
    assert estimator_variance(draws[:1], mask) != estimator_variance(draws[:1], mask)   # NaN with one draw


def _recorded_passes(monkeypatch) -> list:
    """Record the masks every gradient-carrying estimate of grpo_update used, in call order."""
    import diffucoder.recipes.coupled_grpo as recipe
    seen, real = [], recipe.token_logprobs

    def spy(model, *args, passes=None, **kwargs):
        if torch.is_grad_enabled():
            seen.append([p.masked.clone() for p in passes])
        return real(model, *args, passes=passes, **kwargs)
    monkeypatch.setattr(recipe, "token_logprobs", spy)
    return seen


@pytest.mark.parametrize("mode", ["fresh", "shared"])
def test_mask_seeds_fresh_per_iteration_or_shared(assets, monkeypatch, mode):
    cfg, engine, batch = _setup(assets, ["objective.beta=0", "objective.mu=2", f"objective.mask_seeds={mode}"])
    seen = _recorded_passes(monkeypatch)
    from diffucoder.recipes.coupled_grpo import MASK_STREAM, seed_of
    seeds = [seed_of(0, MASK_STREAM, 0, 0, 0 if mode == "shared" else i) for i in range(2)]
    assert (seeds[0] == seeds[1]) is (mode == "shared")
    grpo_update(engine, None, batch, torch.tensor([1.0, -1.0, -1.0, 1.0]), cfg.objective,
                engine.module.config.mask_token_id, seeds, micro=4)
    first, second = seen                      # one micro-batch per iteration
    same = all(torch.equal(a, b) for a, b in zip(first, second))
    assert same is (mode == "shared")


@pytest.mark.parametrize("span", ["answer", "completion"])
def test_mask_span_hides_the_answer_length_only_when_asked(assets, monkeypatch, span):
    cfg, engine, batch = _setup(assets, ["objective.beta=0", "objective.mu=1", f"objective.mask_span={span}"])
    # Whether the random micro model ends a completion early depends on the CPU's float paths:
    # end the first one at position 3 so that one answer is shorter than the canvas everywhere.
    config = engine.module.config
    ids = batch.completion_ids.clone()
    ids[0, 3] = config.eos_token_id
    batch = dataclasses.replace(batch, completion_ids=ids,
                                mask=completion_mask(ids, [config.eos_token_id, config.dlm_pad_token_id]))
    assert not bool(batch.mask.all())
    seen = _recorded_passes(monkeypatch)
    grpo_update(engine, None, batch, torch.tensor([1.0, -1.0, -1.0, 1.0]), cfg.objective,
                engine.module.config.mask_token_id, [3], micro=4)
    (full, first, second), = seen
    expected = torch.ones_like(batch.mask) if span == "completion" else batch.mask
    assert torch.equal(full, expected) and torch.equal(first | second, expected)


def test_loss_norm_reaches_the_objective(assets, monkeypatch):
    import diffucoder.recipes.coupled_grpo as recipe
    cfg, engine, batch = _setup(assets, ["objective.beta=0", "objective.mu=1", "objective.loss_norm=token"])
    used, real = [], recipe.grpo_loss
    monkeypatch.setattr(recipe, "grpo_loss", lambda *a, **k: used.append(k["normalise"]) or real(*a, **k))
    grpo_update(engine, None, batch, torch.tensor([1.0, -1.0, -1.0, 1.0]), cfg.objective,
                engine.module.config.mask_token_id, [3], micro=2)
    assert used == ["token", "token"]         # two micro-batches


@pytest.mark.parametrize("unit,expected", [("rl_steps", [4, 8]), ("optimizer_steps", [2, 4, 6, 8])])
def test_reference_sync_counts_rl_steps_or_optimizer_updates(unit, expected):
    from diffucoder.recipes.coupled_grpo import ObjectiveSection
    objective = ObjectiveSection(mu=2, ref_sync_every=4, ref_sync_unit=unit)
    # mu = 2 updates per RL step: 4 optimizer updates are 2 RL steps
    assert [done for done in range(1, 9) if objective.ref_sync_due(done)] == expected
    odd = ObjectiveSection(mu=3, ref_sync_every=4, ref_sync_unit="optimizer_steps")
    # updates 1-3, 4-6, 7-9, 10-12: multiples of 4 fall in RL steps 2 (4), 3 (8), 4 (12)
    assert [done for done in range(1, 5) if odd.ref_sync_due(done)] == [2, 3, 4]
    assert not ObjectiveSection(ref_sync_every=0).ref_sync_due(64)


def test_reference_sync_mixes_as_trl_does(assets):
    from diffucoder.recipes.coupled_grpo import RLState, WithReference
    from diffucoder.training.metrics import MetricsLog
    _cfg, engine, _batch = _setup(assets)
    reference = copy.deepcopy(engine.module)
    with torch.no_grad():
        for param in engine.module.parameters():
            param.add_(1.0)
    name, policy_value = next(iter(engine.module.state_dict().items()))
    ref_before = reference.state_dict()[name].clone()
    state = RLState(log=MetricsLog(Path("unused.jsonl"), enabled=False))
    WithReference(engine, reference, state, None).sync(7, alpha=0.6)
    torch.testing.assert_close(reference.state_dict()[name], 0.6 * policy_value + 0.4 * ref_before)
    assert state.ref_synced_at == 7
    WithReference(engine, reference, state, None).sync(8)          # alpha 1: a copy
    assert torch.equal(reference.state_dict()[name], policy_value)


def test_rollouts_keep_the_last_prompt_tokens_within_the_budget(assets, tmp_path):
    model_dir, suite, _root, model, _batch = assets
    tokenizer = load_tokenizer(model_dir)
    prompts, _ = read_prompts(suite / "tasks-train.jsonl", "synthetic")
    cfg = micro_rl_config(model_dir, suite, tmp_path / "w")
    whole = generate_rollouts(model, tokenizer, prompts[:2], 1, cfg.rollout.sampling, torch.Generator().manual_seed(0),
                              [tokenizer.eos_token_id])
    cut = generate_rollouts(model, tokenizer, prompts[:2], 1, cfg.rollout.sampling, torch.Generator().manual_seed(0),
                            [tokenizer.eos_token_id], prompt_budget=5)
    assert whole.prompt_ids.shape[1] > 5 and cut.prompt_ids.shape[1] == 5
    assert torch.equal(cut.prompt_ids, whole.prompt_ids[:, -5:])
    # each row is its prompt's own last five tokens, as the tokenizer encodes the text (prompts are left-padded)
    assert cut.prompt_ids.tolist() == [tokenizer(p.text, add_special_tokens=False).input_ids[-5:]
                                       for p in prompts[:2]]
