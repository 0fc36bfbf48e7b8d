"""Helpers for the server tests: a micro random model, server processes, direct sampler calls."""
from __future__ import annotations

from pathlib import Path

from diffucoder.serving.smoke import ServerProcess, random_model_dir, server_command

MICRO = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
             num_hidden_layers=2)
# Small caps so that over-limit requests are cheap to build; tiny decodes so that 1000 requests are quick.
TEST_OVERRIDES = ("access_log=false", "torch_threads=1", "defaults.max_tokens=4", "limits.max_tokens=32",
                  "limits.steps=32", "limits.prompt_tokens=160", "limits.prompts_per_request=8",
                  "limits.body_bytes=65536", "batching.max_wait_ms=30", "batching.queue_size=4096")


def micro_model_dir(path: Path) -> Path:
    return random_model_dir(path, **MICRO)


def start_server(model_dir: Path, log_dir: Path, *overrides: str, name: str = "server") -> ServerProcess:
    server = ServerProcess(server_command(model_dir, overrides=TEST_OVERRIDES + overrides), log_dir / f"{name}.log")
    server.start(timeout_s=120)
    return server


def direct_texts(model, tokenizer, prompts: list[str], **sampling) -> list[str]:
    """What the project's sampler gives for ``prompts`` decoded as ONE left-padded batch (greedy)."""
    from diffucoder.sampling import decode_completions, diffusion_generate, encode_prompts
    ids, mask = encode_prompts(tokenizer, prompts)
    settings = dict(temperature=0.0, top_p=0.95, top_k=0, alg="entropy", alg_temp=0.0) | sampling
    return decode_completions(tokenizer, diffusion_generate(model, ids, mask, **settings), stop="eos")
