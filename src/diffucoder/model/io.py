"""Load Dream/DiffuCoder or Qwen2 checkpoints into ``DreamModel``; save atomically in the released layout.

    from diffucoder.model import load_model, save_model
    model = load_model("ckpt/qwen2.5-coder-7b", mask_token_id=151666)   # AR start point
    model = load_model("ckpt/DiffuCoder-7B-Instruct")                  # released dLLM (sharded or not)
    save_model(model, "out/step-100")     # all or nothing, see below

A Qwen2 directory (``model_type: "qwen2"``) keeps its shapes and ids; only the
mask (and optionally ``<|dlm_pad|>``) id is added. Any missing or unexpected
weight name is an error, never a silent random initialisation.

``save_model`` writes what the released Dream/DiffuCoder checkpoints carry, so the directory
also loads without diffucoder (``AutoModel.from_pretrained(dir, trust_remote_code=True)``):
``config.json`` (``model_type: "Dream"``, ``auto_map`` to the project's own
``configuration_dream.py`` / ``modeling_dream.py``, copied beside it from
``diffucoder.model.remote_code``, and a top-level ``rope_theta`` beside transformers 5's
``rope_parameters``: Dream's config reads only the former and defaults to 10000 without it),
``generation_config.json`` (the special-token ids) and the safetensors weights, sharded with a
``model.safetensors.index.json`` above ``max_shard_size``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import Qwen2Config

from diffucoder.errors import DiffucoderError
from diffucoder.model.config import DREAM_MODEL_TYPE, DreamConfig
from diffucoder.model.dream import DreamModel
from diffucoder.model.remote_code import AUTO_MAP, REMOTE_CODE_FILES

# Qwen2 config keys that have no meaning for a bidirectional Dream model.
_DROPPED_QWEN2_KEYS = ("architectures", "model_type", "auto_map", "transformers_version", "use_cache",
                       "is_causal", "_name_or_path")


class CheckpointError(DiffucoderError):
    """A checkpoint directory is missing, of an unknown kind, or does not match the model."""


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint directory, as a dict."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: not a checkpoint directory (no config.json)")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file}: invalid JSON ({err})") from err


def dream_config_from_qwen2(qwen2: dict[str, Any], *, mask_token_id: int = 151666,
                            dlm_pad_token_id: int | None = None) -> DreamConfig:
    """A ``DreamConfig`` with a Qwen2 config's shapes, rope and ids, plus the diffusion ids."""
    # Through Qwen2Config first, so the keys a saved config.json omits take Qwen2's
    # defaults, not DreamConfig's (which are the 7B shapes).
    full = Qwen2Config.from_dict({key: value for key, value in qwen2.items() if key != "model_type"}).to_dict()
    values = {key: value for key, value in full.items() if key not in _DROPPED_QWEN2_KEYS}
    values.update(mask_token_id=mask_token_id, dlm_pad_token_id=dlm_pad_token_id)
    return DreamConfig(**values)


def load_model(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               mask_token_id: int | None = None, dlm_pad_token_id: int | None = None,
               attn_implementation: str = "sdpa") -> DreamModel:
    """Load a Dream (``model_type: "Dream"``) or Qwen2 (``"qwen2"``) checkpoint directory.

    ``mask_token_id``/``dlm_pad_token_id`` override the checkpoint's ids (for a Qwen2
    checkpoint the mask id defaults to Dream's 151666). Raises ``CheckpointError``
    if any weight is missing, unexpected or of the wrong shape.
    """
    raw = read_checkpoint_config(path)
    model_type = raw.get("model_type")
    overrides = {key: value for key, value in (("mask_token_id", mask_token_id),
                                               ("dlm_pad_token_id", dlm_pad_token_id)) if value is not None}
    if model_type == DREAM_MODEL_TYPE:
        config = DreamConfig.from_dict({**raw, **overrides})  # ids re-validated with the overrides
    elif model_type == "qwen2":
        config = dream_config_from_qwen2(raw, mask_token_id=overrides.get("mask_token_id", 151666),
                                         dlm_pad_token_id=dlm_pad_token_id)
    else:
        raise CheckpointError(f"{path}: model_type {model_type!r} is neither {DREAM_MODEL_TYPE!r} nor 'qwen2'")
    # No device_map: that path needs `accelerate`; load on CPU, then move.
    model, info = DreamModel.from_pretrained(path, config=config, dtype=dtype,
                                             attn_implementation=attn_implementation, output_loading_info=True)
    problems = {kind: sorted(info.get(kind) or ()) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {kind: keys for kind, keys in problems.items() if keys}
    if problems:
        raise CheckpointError(f"{path}: weights do not match the model: {problems}")
    return model.to(device)


def save_model(model: DreamModel, path: str | os.PathLike, max_shard_size: str | int = "5GB") -> Path:
    """Write the model directory (module docstring) to ``path``; an existing ``path`` is replaced whole.

    The files go to a temporary sibling directory first and are renamed into place,
    so a crash leaves either the old checkpoint or the new one, never a mix. Weights
    above ``max_shard_size`` (the released 7B models come in four ~5 GB shards) are
    split into ``model-0000i-of-0000n.safetensors`` with an index.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(staging, max_shard_size=max_shard_size)  # safetensors is transformers' only format
        write_release_files(staging, model.config)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def write_release_files(directory: Path, config: DreamConfig) -> None:
    """Beside a saved ``config.json``: ``auto_map``, a top-level ``rope_theta``, the remote-code
    modules and ``generation_config.json``."""
    config_file = directory / "config.json"
    values = json.loads(config_file.read_text())
    values["auto_map"] = dict(AUTO_MAP)
    values["rope_theta"] = float(config.rope_parameters["rope_theta"])
    config_file.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    for source in REMOTE_CODE_FILES:
        shutil.copyfile(source, directory / source.name)
    ids = {name: getattr(config, name) for name in
           ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id", "dlm_pad_token_id")}
    generation = {name: value for name, value in ids.items() if value is not None}
    (directory / "generation_config.json").write_text(json.dumps(
        {**generation, "transformers_version": values.get("transformers_version", "")}, indent=2) + "\n")
