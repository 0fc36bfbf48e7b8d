"""DreamConfig for ``AutoConfig.from_pretrained(dir, trust_remote_code=True)`` without diffucoder.

Written by the diffucoder project and copied beside every saved model (``config.json`` maps
``AutoConfig`` here through ``auto_map``), so an exported directory loads where only torch and
transformers are installed:

    from transformers import AutoConfig, AutoModel
    config = AutoConfig.from_pretrained("out/sft/model", trust_remote_code=True)
    model = AutoModel.from_pretrained("out/sft/model", trust_remote_code=True)

The fields are Qwen2's plus ``mask_token_id`` (``<|mask|>``) and ``dlm_pad_token_id``
(``<|dlm_pad|>``, instruct models). RoPE is the plain kind: ``rope_theta`` is read from the
top-level key (as released Dream/DiffuCoder configs write it) or from transformers 5's
``rope_parameters``; any scaled RoPE is refused rather than silently ignored.
"""
from transformers import PretrainedConfig


class DreamConfig(PretrainedConfig):
    model_type = "Dream"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, hidden_act="silu", max_position_embeddings=131072,
                 initializer_range=0.02, rms_norm_eps=1e-6, rope_theta=None, attention_dropout=0.0,
                 tie_word_embeddings=False, mask_token_id=151666, dlm_pad_token_id=None, pad_token_id=151643,
                 bos_token_id=151643, eos_token_id=151643, **kwargs):
        # transformers 5 writes RoPE as {"rope_type": ..., "rope_theta": ...}; 4.x as rope_theta + rope_scaling.
        rope_parameters, rope_scaling = kwargs.pop("rope_parameters", None), kwargs.pop("rope_scaling", None)
        rope = rope_parameters or rope_scaling or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise ValueError(f"DreamConfig: rope type {rope_type!r} is not supported by this model code "
                             "(only plain RoPE with rope_theta)")
        if rope_theta is None:
            rope_theta = rope.get("rope_theta", 10000.0)
        if kwargs.pop("is_causal", False):
            raise ValueError("DreamConfig: 'is_causal' must be false: Dream attention is bidirectional")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = float(rope_theta)
        self.attention_dropout = attention_dropout
        self.mask_token_id = mask_token_id
        self.dlm_pad_token_id = dlm_pad_token_id
        if hidden_size % num_attention_heads or num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"DreamConfig: heads {num_attention_heads} / kv heads {self.num_key_value_heads} "
                             f"do not divide hidden_size {hidden_size}")
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
