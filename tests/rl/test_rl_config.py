"""The RL recipe: defaults <- YAML <- overrides, both presets' YAMLs, the errors, the engine view."""
import pytest

from diffucoder.config import ConfigError, load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.recipes.coupled_grpo import RLConfig
from diffucoder.rl.estimator import EstimatorConfig
from diffucoder.rl.rewards import RewardConfig
from diffucoder.sampling import SamplingConfig


def test_defaults_are_the_papers_numbers():
    cfg = load_config(RLConfig)
    assert cfg.stage == "rl"
    assert isinstance(cfg.rollout.sampling, SamplingConfig) and isinstance(cfg.objective.estimator, EstimatorConfig)
    assert isinstance(cfg.reward, RewardConfig) and cfg.reward.weights() == RewardConfig(0.5, 2.0)
    o = cfg.objective
    assert (o.eps, o.beta, o.mu, o.ref_sync_every, o.estimator.method) == (0.5, 0.01, 2, 64, "coupled")
    assert cfg.advantage.scale_rewards is False and cfg.hard_filter.enabled is False


def test_7b_recipe_matches_method_md():
    cfg = load_config(RLConfig, recipe_path("7b-gpu", "rl"))
    s, o = cfg.rollout.sampling, cfg.objective
    assert cfg.rollout.group_size == 10
    assert (s.max_new_tokens, s.steps, s.temperature, s.top_p, s.alg) == (256, 256, 1.0, 0.95, "entropy")
    assert (o.mu, o.eps, o.beta, o.ref_sync_every) == (2, 0.5, 0.01, 64)
    assert (o.estimator.method, o.estimator.pairs, o.estimator.r_min, o.estimator.r_max) == ("coupled", 1, 0.2, 0.8)
    assert (cfg.optim.lr, cfg.optim.min_lr_ratio, cfg.optim.betas) == (1e-6, 0.1, [0.9, 0.99])
    assert (cfg.optim.weight_decay, cfg.optim.clip) == (0.1, 0.2)
    assert (cfg.reward.code_weight, cfg.reward.format_weight) == (2.0, 0.5)
    assert cfg.advantage.scale_rewards is False
    assert cfg.distributed.backend == "deepspeed" and cfg.distributed.deepspeed_config.endswith("zero2.json")
    assert cfg.train.precision == "bf16" and cfg.model.preset == "7b"
    assert cfg.data.kind == "acecode_jsonl"


def test_7b_recipe_does_what_the_released_trainer_does_where_it_differs_from_the_paper():
    """Values read off apple/ml-diffucoder (config_coupled_code.yaml, coupled_grpo.py, rewards.py,
    grpo.py, process_data.py, and TRL's SyncRefModelCallback)."""
    released = load_config(RLConfig, recipe_path("7b-gpu", "rl"))
    d, r, o, h = released.data, released.reward, released.objective, released.hard_filter
    assert (d.max_prompt_tokens, d.long_prompts, d.prompt_style) == (200, "truncate_left", "released")
    assert (r.format_rule, r.test_runs, r.test_timeout_s) == ("official", "each", 5.0)
    assert (o.loss_norm, o.mask_span, o.mask_seeds, o.estimator.ratio) == ("token", "completion", "shared", "per_batch")
    assert (o.ref_sync_every, o.ref_sync_unit, o.ref_sync_alpha) == (64, "optimizer_steps", 0.6)
    assert (h.thresholds, h.mean_percentile, h.std_percentile) == ("percentile", 20.0, 40.0)
    assert (h.models, h.duplicate_stubs) == (["qwen_coder_2.5", "llama3_instruct"], True)
    assert released.advantage.baseline == "leave_one_out"
    assert released.rollout.sampling.compute_dtype == "model"   # bf16 draws and confidences, as released
    assert o.scored_until == "im_end"
    # the project's (and the paper's) choices stay the defaults the CPU preset runs on
    tiny = load_config(RLConfig, recipe_path("tiny-cpu", "rl"))
    assert (tiny.objective.loss_norm, tiny.objective.mask_span, tiny.objective.mask_seeds) == \
        ("sequence", "answer", "fresh")
    assert (tiny.reward.format_rule, tiny.reward.test_runs, tiny.data.prompt_style) == ("lenient", "together", "project")
    assert (tiny.objective.ref_sync_alpha, tiny.objective.ref_sync_unit) == (1.0, "rl_steps")
    assert tiny.objective.scored_until == "first_stop"


def test_7b_deepspeed_view_fills_the_batch_layout():
    from diffucoder.training.engines import deepspeed_config
    cfg = load_config(RLConfig, recipe_path("7b-gpu", "rl"))
    ds = deepspeed_config(cfg.distributed.deepspeed_config, cfg.engine_optim(), cfg.layout(8), world_size=8)
    # one prompt x 10 completions per GPU, in micro-batches of 5
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (5, 2)
    assert ds["train_batch_size"] == 80 and ds["gradient_clipping"] == 0.2
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["optimizer"]["params"]["betas"] == [0.9, 0.99]


def test_tiny_recipe_loads_and_covers_the_sft_answers():
    cfg = load_config(RLConfig, recipe_path("tiny-cpu", "rl"))
    assert cfg.data.kind == "synthetic" and cfg.data.file == "tasks-train.jsonl"
    assert cfg.rollout.sampling.max_new_tokens >= 73        # the SFT suite's answers are up to 72 tokens + end
    assert cfg.distributed.backend == "none" and cfg.train.steps <= 8


def test_overrides_reach_nested_sections():
    cfg = load_config(RLConfig, recipe_path("tiny-cpu", "rl"),
                      ["rollout.sampling.temperature=0.7", "objective.estimator.method=decoupled",
                       "reward.code_weight=1.5", "hard_filter.enabled=true", "hard_filter.max_mean=0.3"])
    assert cfg.rollout.sampling.temperature == 0.7 and cfg.objective.estimator.method == "decoupled"
    assert cfg.reward.weights().code_weight == 1.5 and cfg.hard_filter.max_mean == 0.3


def test_engine_view_schedules_every_inner_update():
    cfg = load_config(RLConfig, None, ["train.steps=10", "objective.mu=2", "optim.warmup_steps=3",
                                       "rollout.prompts_per_step=4", "rollout.group_size=4",
                                       "objective.micro_batch=4"])
    layout = cfg.layout(world_size=2)
    assert layout.total_steps == 20 and cfg.engine_optim().warmup_steps == 6
    assert (layout.micro_batch, layout.grad_accum) == (4, 2)   # 2 prompts x 4 per rank = 8 rows
    assert cfg.rank_prompts(2) == 2 and cfg.micro_batches(1) == (4, 4)


@pytest.mark.parametrize("overrides, message", [
    (["objective.eps=1.5"], "'objective.eps'"),
    (["objective.mu=0"], "'objective.mu'"),
    (["rollout.group_size=1"], "'rollout.group_size'"),
    (["distributed.backend=fsdp2"], "fsdp2 shards the weights"),
    (["hard_filter.enabled=true", "hard_filter.source=file"], "'hard_filter.pass_rates_file'"),
    (["hard_filter.enabled=true", "hard_filter.source=records"], "'hard_filter.source'"),
    (["data.kind=mbpp"], "'data.kind'"),
    (["objective.estimator.method=half"], "'objective.estimator.method'"),
    (["rollout.sampling.top_p=0"], "'top_p': must be in"),  # validate() names the field only
    (["objective.micro_batch=100"], "'objective.micro_batch'"),
    (["objective.kl=0.1"], "unknown key"),
    (["optim.warmup_steps=99", "train.steps=4"], "'optim.warmup_steps'"),
])
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RLConfig, recipe_path("tiny-cpu", "rl"), overrides)


def test_layout_errors_need_the_world_size():
    cfg = load_config(RLConfig, None, ["rollout.prompts_per_step=3", "rollout.group_size=4",
                                       "objective.micro_batch=5"])
    with pytest.raises(ConfigError, match="'rollout.prompts_per_step': 3 prompts do not divide among 2"):
        cfg.rank_prompts(2)
    with pytest.raises(ConfigError, match="'objective.micro_batch': 5 does not divide a rank's 12"):
        cfg.micro_batches(1)
