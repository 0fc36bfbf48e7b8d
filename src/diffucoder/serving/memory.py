"""GPU memory of a model server: weights, KV cache and one decode batch at the largest request.

    from diffucoder.model import build_config
    est = serve_memory_estimate(build_config("7b"), cfg)      # cfg: ServeConfig (configs/7b-gpu/serve.yaml)
    print("\\n".join(est.lines(gpu_memory_gib=80)))
    #   diffucoder serve --estimate --model-preset 7b --config configs/7b-gpu/serve.yaml --gpu-memory-gib 80

The worst batch the server admits is ``batching.max_batch_size`` rows of
``limits.prompt_tokens`` prompt tokens plus ``limits.max_tokens`` new ones (L tokens in all,
N new), decoded over a vocabulary of V. Its peak holds, on top of the weights:

- KV cache: the approximate block-wise modes keep keys/values of up to L positions per layer
  (2 x layers x kv_heads x head_dim x batch x L); the exact mode keeps none (every step runs
  the whole sequence again).
- logits: the model's output for every fed position, batch x L x V in the model dtype (the
  exact mode feeds all L positions at every step; the cached modes at their first call).
- sampling: the masked positions' logits (batch x N rows at the first step of the exact
  mode, batch x block_size in the cached modes) gathered in the model dtype, then in fp32
  with the top-p sort's values and int64 indices, its softmax and cumulative sum, the
  probabilities and the entropy's product (``SAMPLING_BYTES_PER_LOGIT``).
- activations of one layer (layers run one after another): four hidden-size tensors (residual,
  norm, attention output, q/k/v) and three MLP-size ones per token, plus the boolean
  attention mask (batch x L x L) of a padded batch.

Not included: the CUDA context (~0.5-1 GiB), cuBLAS workspaces and allocator fragmentation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from diffucoder.model.config import DreamConfig
from diffucoder.model.memory import GIB, memory_plan
from diffucoder.serving.config import ServeConfig

# fp32 copy 4 + top-p sort values 4 + sort indices (int64) 8 + softmax 4 + cumsum 4
# + probabilities 4 + entropy product 4 (step.sample_tokens and transformers' TopPLogitsWarper).
SAMPLING_BYTES_PER_LOGIT = 32
HIDDEN_TENSORS, MLP_TENSORS = 4, 3


@dataclass(frozen=True)
class ServeMemoryEstimate:
    params: int
    dtype: str
    mode: str
    batch: int
    prompt_tokens: int
    new_tokens: int
    weights_bytes: int
    kv_cache_bytes: int
    logits_bytes: int
    sampling_bytes: int
    activation_bytes: int

    @property
    def batch_bytes(self) -> int:
        """What one decode batch adds to the weights."""
        return self.kv_cache_bytes + self.logits_bytes + self.sampling_bytes + self.activation_bytes

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.batch_bytes

    def lines(self, gpu_memory_gib: float = 0.0) -> list[str]:
        cache = f"KV cache {self.kv_cache_bytes / GIB:.2f} GiB" + (" (the exact mode keeps none)"
                                                                   if self.mode == "exact" else "")
        out = [f"serving memory estimate ({self.params:,} params in {self.dtype}, {self.mode} mode, "
               f"batch {self.batch} x ({self.prompt_tokens} prompt + {self.new_tokens} new tokens)):",
               f"weights {self.weights_bytes / GIB:.2f} GiB, {cache}, logits {self.logits_bytes / GIB:.2f} GiB, "
               f"sampling {self.sampling_bytes / GIB:.2f} GiB, activations {self.activation_bytes / GIB:.2f} GiB, "
               f"total {self.total_bytes / GIB:.2f} GiB per GPU",
               "(CUDA context, workspaces and fragmentation come on top)"]
        if gpu_memory_gib:
            spare = gpu_memory_gib - self.total_bytes / GIB
            out.append(f"{'fits' if spare > 0 else 'DOES NOT FIT'} in {gpu_memory_gib:g} GiB per GPU "
                       f"({spare:+.1f} GiB left)")
        return out


def serve_memory_estimate(model: DreamConfig, cfg: ServeConfig) -> ServeMemoryEstimate:
    """Peak GPU memory of serving ``model`` with the server settings ``cfg`` (see the module doc)."""
    element = getattr(torch, cfg.dtype).itemsize
    batch, prompt, new = cfg.max_batch_size, cfg.limits.prompt_tokens, cfg.limits.max_tokens
    length, vocab = prompt + new, model.vocab_size
    head_dim = model.hidden_size // model.num_attention_heads
    exact = cfg.sampler.mode == "exact"
    kv_cache = 0 if exact else (2 * model.num_hidden_layers * model.num_key_value_heads * head_dim
                                * batch * length * element)
    masked_rows = batch * (new if exact else min(cfg.sampler.block_size, new))
    per_token = (HIDDEN_TENSORS * model.hidden_size + MLP_TENSORS * model.intermediate_size) * element
    weights = memory_plan(model, sharding="ddp", param_dtype=cfg.dtype)  # one full copy, no optimizer
    return ServeMemoryEstimate(
        params=weights.params, dtype=cfg.dtype, mode=cfg.sampler.mode, batch=batch, prompt_tokens=prompt,
        new_tokens=new, weights_bytes=weights.weights_bytes,
        kv_cache_bytes=kv_cache,
        logits_bytes=batch * length * vocab * element,
        sampling_bytes=masked_rows * vocab * (element + SAMPLING_BYTES_PER_LOGIT),
        activation_bytes=batch * length * per_token + batch * length * length)
