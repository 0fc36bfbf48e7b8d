import pytest
import torch

from diffucoder.model import ModelConfigError, build_config, build_model, memory_plan, param_count

# The released 7B shapes, counted by hand (docs/method.md, section 1.3).
HIDDEN, INTER, LAYERS, HEADS, KV, VOCAB = 3584, 18944, 28, 28, 4, 152064
HEAD_DIM = HIDDEN // HEADS
PER_LAYER = ((HIDDEN * HIDDEN + HIDDEN)                       # q_proj + bias
             + 2 * (HIDDEN * KV * HEAD_DIM + KV * HEAD_DIM)   # k_proj, v_proj + bias
             + HIDDEN * HIDDEN                                # o_proj
             + 3 * HIDDEN * INTER                             # gate, up, down
             + 2 * HIDDEN)                                    # two RMSNorms
RELEASED_7B = LAYERS * PER_LAYER + HIDDEN + 2 * VOCAB * HIDDEN


def test_7b_preset_has_the_released_parameter_count_on_meta():
    assert RELEASED_7B == 7_615_616_512  # "about 7.6 B"
    cfg = build_config("7b")
    model = build_model(cfg, device="meta", dtype=torch.bfloat16)
    params = list(model.parameters())
    assert all(p.device.type == "meta" for p in params)
    assert sum(p.numel() for p in params) == RELEASED_7B == param_count(cfg)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (KV * HEAD_DIM, HIDDEN)
    assert model.lm_head.weight is not model.model.embed_tokens.weight  # untied


@pytest.mark.parametrize("preset, low, high", [("tiny", 2e6, 8e6), ("small", 30e6, 60e6)])
def test_small_presets_sizes_match_their_analytic_count(preset, low, high):
    cfg = build_config(preset)
    model = build_model(cfg, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert count == param_count(cfg)
    assert low <= count <= high


def test_param_count_of_a_tied_model():
    cfg = build_config("tiny", vocab_size=1000, tie_word_embeddings=True)
    model = build_model(cfg, device="meta")
    assert sum(p.numel() for p in model.parameters()) == param_count(cfg)
    assert param_count(cfg) == param_count(build_config("tiny", vocab_size=1000)) - 1000 * 256


def test_build_model_seed_is_reproducible():
    cfg = build_config("tiny", vocab_size=256, num_hidden_layers=1)
    first, second = build_model(cfg, seed=7), build_model(cfg, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_memory_plan_matches_hand_arithmetic_for_the_7b_recipe():
    cfg = build_config("7b")
    p = RELEASED_7B
    ddp = memory_plan(cfg, sharding="ddp", world_size=8)
    assert (ddp.weights_bytes, ddp.grads_bytes, ddp.optimizer_bytes) == (2 * p, 2 * p, 12 * p)
    assert ddp.total_bytes == 16 * p  # the ZeRO paper's 16 bytes per parameter

    shard64 = -(-p // 64)  # ceil: ZeRO pads the flat buffer to the world size
    zero2 = memory_plan(cfg, sharding=2, world_size=64)  # SFT/RL recipe: 8 x 8 GPUs, ZeRO-2
    assert (zero2.weights_bytes, zero2.grads_bytes, zero2.optimizer_bytes) == (2 * p, 2 * shard64, 12 * shard64)

    shard80 = -(-p // 80)
    fsdp = memory_plan(cfg, sharding="fsdp", world_size=80)  # adaptation: 10 nodes x 8 H100, FSDP
    assert (fsdp.weights_bytes, fsdp.grads_bytes, fsdp.optimizer_bytes) == (2 * shard80, 2 * shard80, 12 * shard80)
    assert fsdp.total_bytes < 1.5 * 1024 ** 3 < zero2.total_bytes

    zero1 = memory_plan(p, sharding="zero1", world_size=4, param_dtype="float32", master_weights=False)
    assert (zero1.weights_bytes, zero1.grads_bytes, zero1.optimizer_bytes) == (4 * p, 4 * p, 8 * -(-p // 4))
    assert "per GPU" in zero2.summary()


@pytest.mark.parametrize("kwargs, match", [
    ({"sharding": "zero4"}, "unknown strategy"), ({"sharding": 5}, "ZeRO stage"),
    ({"world_size": 0}, "world_size"), ({"param_dtype": "float77"}, "unknown dtype"),
])
def test_memory_plan_rejects_bad_input(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        memory_plan(1000, **kwargs)
