"""DreamModel for ``AutoModel.from_pretrained(dir, trust_remote_code=True)`` without diffucoder.

Written by the diffucoder project and copied beside every saved model; it imports only torch
and transformers and computes what ``diffucoder.model.DreamModel`` computes:

    import torch
    from transformers import AutoModel
    model = AutoModel.from_pretrained("out/sft/model", trust_remote_code=True).eval()
    logits = model(input_ids, attention_mask=pad_mask).logits    # (B, L, V), unshifted
    next_token_logits = torch.cat([logits[:, :1], logits[:, :-1]], 1)   # [:, i] predicts token i

A Qwen2 transformer (RMSNorm, SwiGLU, RoPE, grouped-query attention with q/k/v biases, untied
head) with **bidirectional** attention. ``attention_mask`` is ``None`` (every token sees every
token), a 2-D padding mask (1 = token; real tokens attend to real tokens, a pad query to itself,
positions ``cumsum(mask) - 1`` clipped at 0 so a left-padded row sees the positions it would see
alone), or a 4-D boolean mask (True = may attend; pass position ids with it). The logit at
position ``i - 1`` predicts the token at ``i``, as in the autoregressive model the weights come
from. Diffusion sampling is not part of this file: use diffucoder's sampler or your own.
"""
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_dream import DreamConfig

# torch >= 2.5 attends grouped heads without copying keys/values (transformers' choice without a mask).
_SDPA_HAS_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)


def position_ids_from_mask(attention_mask):
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def attention_from_padding(attention_mask):
    real = attention_mask.bool()
    eye = torch.eye(real.shape[-1], dtype=torch.bool, device=real.device)
    return (real[:, None, None, :] & real[:, None, :, None]) | eye


def with_diagonal_for_empty_rows(mask):
    empty = ~mask.any(dim=-1, keepdim=True)
    eye = torch.eye(mask.shape[-2], mask.shape[-1], dtype=torch.bool, device=mask.device)
    return mask | (empty & eye)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(states, groups):
    if groups == 1:
        return states
    batch, heads, length, dim = states.shape
    return states[:, :, None].expand(batch, heads, groups, length, dim).reshape(batch, heads * groups, length, dim)


class DreamRMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(dtype)


class DreamMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DreamAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        self.scaling = self.head_dim ** -0.5
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, hidden_states, cos, sin, mask):
        batch, length = hidden_states.shape[:2]
        shape = (batch, length, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        query = query * cos + rotate_half(query) * sin
        key = key * cos + rotate_half(key) * sin
        extra = {}
        if mask is None and self.groups > 1 and _SDPA_HAS_GQA:
            extra["enable_gqa"] = True  # as transformers' sdpa path does without a mask
        else:
            key, value = repeat_kv(key, self.groups), repeat_kv(value, self.groups)
        output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0,
                                                scale=self.scaling, is_causal=False, **extra)
        return self.o_proj(output.transpose(1, 2).reshape(batch, length, -1).contiguous())


class DreamDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = DreamAttention(config)
        self.mlp = DreamMLP(config)
        self.input_layernorm = DreamRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = DreamRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden_states, cos, sin, mask):
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), cos, sin, mask)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class DreamBaseModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList([DreamDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = DreamRMSNorm(config.hidden_size, config.rms_norm_eps)

    def rotary(self, hidden_states, position_ids):
        # Computed per call (no buffer): nothing to restore when weights are loaded onto meta tensors.
        dim = self.config.hidden_size // self.config.num_attention_heads
        inv_freq = 1.0 / (self.config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        freqs = position_ids[..., None].float() * inv_freq.to(hidden_states.device)
        angles = torch.cat((freqs, freqs), dim=-1)
        return angles.cos().to(hidden_states.dtype), angles.sin().to(hidden_states.dtype)

    def forward(self, inputs_embeds, position_ids, mask):
        cos, sin = self.rotary(inputs_embeds, position_ids)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, cos, sin, mask)
        return self.norm(hidden_states)


class DreamPreTrainedModel(PreTrainedModel):
    config_class = DreamConfig
    base_model_prefix = "model"
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, DreamRMSNorm):
            nn.init.ones_(module.weight)


class DreamModel(DreamPreTrainedModel):
    """Backbone (``model``) + untied LM head (``lm_head``), under Qwen2's state-dict names."""

    def __init__(self, config):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("DreamModel: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)
        batch, length = inputs_embeds.shape[:2]
        mask, default_positions = None, None
        if attention_mask is not None:
            attention_mask = attention_mask.to(inputs_embeds.device)
            if attention_mask.dim() == 2:
                default_positions = position_ids_from_mask(attention_mask)
                if not bool(attention_mask.bool().all()):
                    mask = attention_from_padding(attention_mask)
            elif attention_mask.dim() in (3, 4) and not attention_mask.is_floating_point():
                mask = attention_mask if attention_mask.dim() == 4 else attention_mask[:, None]
                mask = with_diagonal_for_empty_rows(mask.bool())
            else:
                raise ValueError("DreamModel: attention_mask must be a 2-D 0/1 padding mask or a boolean "
                                 "3-D/4-D mask (True = may attend)")
        if position_ids is None:
            position_ids = default_positions
        if position_ids is None:
            position_ids = torch.arange(length, device=inputs_embeds.device)[None].expand(batch, length)
        hidden_states = self.model(inputs_embeds, position_ids, mask)
        return MaskedLMOutput(logits=self.lm_head(hidden_states))
