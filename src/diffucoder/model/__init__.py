"""The Dream/DiffuCoder model: a bidirectional Qwen2 transformer with the shifted-logits convention.

    from diffucoder.model import build_config, build_model, load_model, save_model, shift_logits
    model = build_model(build_config("tiny", vocab_size=4096), seed=0)
    logits = model(input_ids, attention_mask=pad_mask).logits   # unshifted, (B, L, V)
    next_token_logits = shift_logits(logits)                    # [:, i] predicts token i
    save_model(model, "out/tiny")                               # the released layout (loads without diffucoder)
    model = load_model("out/tiny")                              # also takes Qwen2 / released Dream dirs
    tok = load_checkpoint_tokenizer("out/tiny")                 # also a released Dream tokenizer, no remote code

Modules: ``config`` (DreamConfig + checks), ``dream`` (DreamModel, masks, shift),
``presets`` (tiny/small/7b, param_count), ``memory`` (per-GPU memory plan), ``numerics`` (MKL set-up),
``io`` (checkpoint load/save), ``tokenizer`` (a model directory's tokenizer), ``remote_code``
(the ``trust_remote_code`` modules every saved model carries). Importing the package registers the ``"Dream"``
model type with transformers' Auto classes.
"""
from diffucoder.model.config import DreamConfig, ModelConfigError
from diffucoder.model.dream import (DreamModel, ensure_attendable, padding_attention_mask,
                                    position_ids_from_mask, shift_logits)
from diffucoder.model.io import CheckpointError, dream_config_from_qwen2, load_model, save_model
from diffucoder.model.memory import MemoryPlan, memory_plan
from diffucoder.model.presets import PRESETS, build_config, build_model, param_count
from diffucoder.model.tokenizer import TokenizerLoadError, load_checkpoint_tokenizer, save_checkpoint_tokenizer

__all__ = [
    "CheckpointError", "DreamConfig", "DreamModel", "MemoryPlan", "ModelConfigError", "PRESETS",
    "TokenizerLoadError", "build_config", "build_model", "dream_config_from_qwen2", "ensure_attendable",
    "load_checkpoint_tokenizer", "load_model", "memory_plan", "padding_attention_mask", "param_count",
    "position_ids_from_mask", "save_checkpoint_tokenizer", "save_model", "shift_logits",
]
