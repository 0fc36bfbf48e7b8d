"""Everything the RL trainer reads before it computes: the SFT model, its tokenizer, the prompts.

    inputs = prepare_rl_inputs(cfg, env)
    inputs.init_dir, inputs.tokenizer, inputs.ids, inputs.end_ids, inputs.prompts, inputs.eval_prompts

Every check happens here, before a model is loaded: ``model.init_from`` must be a model
directory or artifact with a tokenizer that knows the diffusion special tokens, and the
prompts file must hold usable records. Prompts too long to leave room for
``rollout.sampling.max_new_tokens`` within the model's positions are skipped (counted).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from diffucoder.config import ConfigError
from diffucoder.rl.config import RLConfig
from diffucoder.rl.prompts import RLPrompt, limit_prompts, read_prompts
from diffucoder.training.distributed import DistEnv
from diffucoder.training.inputs import cache_root, fetch_dir, fetch_file, load_tokenizer, special_ids


@dataclass
class RLInputs:
    init_dir: Path
    tokenizer: Any
    ids: dict[str, int]             # eos, pad, mask, dlm_pad
    end_ids: list[int]              # tokens that end a completion (EOS, <|dlm_pad|>, <|im_end|> if one token)
    max_positions: int
    prompts: list[RLPrompt]
    eval_prompts: list[RLPrompt]
    data_info: dict[str, Any]


def rank_zero_first(env: DistEnv, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on local rank 0 first (it fills the shared cache), then on the other ranks."""
    result = fn() if env.local_rank == 0 else None
    env.barrier()
    return result if env.local_rank == 0 else fn()


def _load(cfg: RLConfig, env: DistEnv, name: str, key: str, tokenizer, max_tokens: int, cache: Path,
          max_prompts: int) -> tuple[list[RLPrompt], dict[str, Any]]:
    path = rank_zero_first(env, lambda: fetch_file(cfg.data.uri, name, key, cache / "data"))
    prompts, skipped = read_prompts(path, cfg.data.kind)
    prompts, too_long = limit_prompts(prompts, tokenizer, max_tokens, max_prompts, cfg.data.seed)
    return prompts, {"file": str(path), "prompts": len(prompts), "skipped_too_long": too_long, **skipped}


def prepare_rl_inputs(cfg: RLConfig, env: DistEnv) -> RLInputs:
    from diffucoder.evaluation.generation import completion_stop_ids
    from diffucoder.model.io import read_checkpoint_config

    if not cfg.model.init_from:
        raise ConfigError("'model.init_from': required: the SFT model to improve (directory or store URI)")
    if not cfg.data.uri:
        raise ConfigError("'data.uri': required: the task-suite artifact (synthetic) or a JSONL file")
    cache = cache_root(cfg)
    init_dir = rank_zero_first(env, lambda: fetch_dir(cfg.model.init_from, "model.init_from", cache / "models"))
    if not (init_dir / "config.json").is_file():
        raise ConfigError(f"'model.init_from': {cfg.model.init_from} holds no model (config.json)")
    tokenizer = load_tokenizer(init_dir, "model.init_from")
    ids = special_ids(tokenizer, "model.init_from")
    raw = read_checkpoint_config(init_dir)
    max_positions = int(raw.get("max_position_embeddings", 0))
    new_tokens = cfg.rollout.sampling.max_new_tokens
    room = max_positions - new_tokens
    max_tokens = min(cfg.data.max_prompt_tokens or room, room)
    if max_tokens < 1:
        raise ConfigError(f"'rollout.sampling.max_new_tokens': {new_tokens} leaves no room for a prompt in "
                          f"the model's {max_positions} positions")
    prompts, info = _load(cfg, env, cfg.data.file, "data.uri", tokenizer, max_tokens, cache, cfg.data.max_prompts)
    if not prompts:
        raise ConfigError(f"'data.uri': no usable prompts in {info['file']} ({info})")
    eval_prompts: list[RLPrompt] = []
    if cfg.data.eval_file and cfg.train.eval_batches:
        wanted = cfg.train.eval_batches * cfg.rollout.prompts_per_step
        eval_prompts, eval_info = _load(cfg, env, cfg.data.eval_file, "data.eval_file", tokenizer, max_tokens,
                                        cache, wanted)
        if eval_info["file"] == info["file"]:
            raise ConfigError(f"'data.eval_file': data.uri {cfg.data.uri} is a single file, so the held-out "
                              "prompts would be the training prompts; give a directory or artifact")
        info["eval"] = eval_info
    return RLInputs(init_dir=init_dir, tokenizer=tokenizer, ids=ids, end_ids=completion_stop_ids(tokenizer),
                    max_positions=max_positions, prompts=prompts, eval_prompts=eval_prompts, data_info=info)
