"""How a diffusion coder writes code: the sampler and AR-ness (docs/method.md, section 3).

    import torch
    from diffucoder.model import load_model
    from diffucoder.sampling import (SamplingConfig, decode_completions, diffusion_generate,
                                     encode_prompts, global_arness, local_arness)
    from transformers import AutoTokenizer

    model, tok = load_model("out/tiny").eval(), AutoTokenizer.from_pretrained("out/tiny")
    ids, mask = encode_prompts(tok, ["def add(a, b):", "import os"])      # left-padded
    out = diffusion_generate(model, ids, mask, SamplingConfig(max_new_tokens=64, steps=64),
                             generator=torch.Generator().manual_seed(0), return_commit_order=True)
    texts = decode_completions(tok, out, stop="eos")     # cut at the first EOS
    local_arness(out.commit_order[0], k=1), global_arness(out.commit_order[0], k=1)

    # APPROXIMATE, faster: block-wise decoding with cached keys/values (Fast-dLLM)
    out = diffusion_generate(model, ids, mask, mode="approx_prefix_cache", block_size=32)

Modules: ``config`` (SamplingConfig), ``schedule`` (tokens committed per step),
``step`` (token draw, confidence, choice), ``generate`` (exact sampler), ``stepwise`` (exact
rows advanced a step at a time, sharing forwards: the server's continuous batching),
``cached`` (approximate cached block-wise sampler), ``output`` (GenerationOutput),
``text`` (tokenize / cut decoded text), ``arness`` (AR-ness@k), ``arness_report``
and the commands ``generate`` (``cli``) and ``analyze-arness`` (``arness_cli``).
"""
from diffucoder.sampling.arness import arness_curves, global_arness, local_arness
from diffucoder.sampling.config import ALGORITHMS, MODES, SamplingConfig, resolve_config
from diffucoder.sampling.generate import SamplingError, diffusion_generate
from diffucoder.sampling.output import GenerationOutput
from diffucoder.sampling.schedule import commit_counts, commit_schedule, timesteps
from diffucoder.sampling.step import filter_logits, sample_tokens
from diffucoder.sampling.text import decode_completions, encode_prompts, load_tokenizer, stop_token_ids

__all__ = [
    "ALGORITHMS", "GenerationOutput", "MODES", "SamplingConfig", "SamplingError", "arness_curves",
    "commit_counts", "commit_schedule", "decode_completions", "diffusion_generate", "encode_prompts",
    "filter_logits", "global_arness", "load_tokenizer", "local_arness", "resolve_config", "sample_tokens",
    "stop_token_ids", "timesteps",
]
