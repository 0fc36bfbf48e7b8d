import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM

from diffucoder.errors import DiffucoderError
from diffucoder.model import (DreamModel, build_config, build_model, padding_attention_mask,
                              position_ids_from_mask, shift_logits)

VOCAB = 96
PAD = 93


def micro_model(attn_implementation: str = "sdpa") -> DreamModel:
    cfg = build_config("tiny", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2)
    return build_model(cfg, seed=0, attn_implementation=attn_implementation).eval()


def tokens(rows: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 90, (rows, length), generator=torch.Generator().manual_seed(seed))


def left_pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = seq
        mask[row, width - len(seq):] = 1
    return ids, mask


@torch.no_grad()
def test_left_padded_batch_equals_unpadded_rows():
    model = micro_model()
    seqs = [tokens(1, n, seed=n)[0] for n in (9, 4, 7)]
    ids, mask = left_pad(seqs)
    batched = model(ids, attention_mask=mask).logits
    assert torch.isfinite(batched).all()
    for row, seq in enumerate(seqs):
        alone = model(seq[None]).logits[0]
        torch.testing.assert_close(batched[row, -len(seq):], alone, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_right_padding_gives_the_same_logits():
    model = micro_model()
    seq = tokens(1, 6)[0]
    ids = torch.cat([seq, torch.full((4,), PAD)])[None]
    mask = torch.tensor([[1] * 6 + [0] * 4])
    torch.testing.assert_close(model(ids, attention_mask=mask).logits[0, :6], model(seq[None]).logits[0],
                               rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_attention_is_bidirectional():
    model = micro_model()
    ids = tokens(1, 10)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 90
    base, after = model(ids).logits, model(changed).logits
    assert (base[0, 0] - after[0, 0]).abs().max() > 1e-4  # a later token changes an earlier position
    with_mask = model(changed, attention_mask=torch.ones_like(changed)).logits
    torch.testing.assert_close(with_mask, after)


@torch.no_grad()
def test_causal_4d_mask_makes_earlier_positions_blind_to_later_tokens():
    model = micro_model()
    ids = tokens(2, 8)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 90
    causal = torch.tril(torch.ones(8, 8, dtype=torch.bool))[None, None].expand(2, 1, 8, 8)
    base, after = model(ids, attention_mask=causal).logits, model(changed, attention_mask=causal).logits
    torch.testing.assert_close(base[:, :-1], after[:, :-1])
    assert (base[:, -1] - after[:, -1]).abs().max() > 1e-4
    full = torch.ones(2, 8, 8, dtype=torch.bool)  # 3-D is accepted too
    torch.testing.assert_close(model(ids, attention_mask=full).logits, model(ids).logits)


def test_fully_padded_rows_make_no_nan_anywhere_even_in_gradients():
    model = micro_model().train()
    ids, mask = left_pad([tokens(1, 6)[0], tokens(1, 2, seed=1)[0]])
    ids = torch.cat([ids, torch.full((1, 6), PAD)])
    mask = torch.cat([mask, torch.zeros((1, 6), dtype=torch.long)])  # a row with no real token at all
    logits = model(ids, attention_mask=mask).logits
    assert torch.isfinite(logits).all()
    logits[mask.bool()].logsumexp(-1).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # An explicit 4-D mask with empty rows (am & am^T, docs/method.md section 1.2) is repaired the same way.
    real = mask.bool()
    method_mask = real[:, None, None, :] & real[:, None, :, None]
    with torch.no_grad():
        out = model(ids, attention_mask=method_mask, position_ids=position_ids_from_mask(mask)).logits
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[real], logits.detach()[real])


@torch.no_grad()
def test_eager_and_sdpa_agree_with_padding():
    ids, mask = left_pad([tokens(1, 7)[0], tokens(1, 3, seed=3)[0]])
    sdpa, eager = micro_model("sdpa"), micro_model("eager")
    eager.load_state_dict(sdpa.state_dict())
    torch.testing.assert_close(eager(ids, attention_mask=mask).logits, sdpa(ids, attention_mask=mask).logits,
                               rtol=1e-5, atol=1e-5)


def test_position_ids_and_padding_mask_rules():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 0, 0, 0]]
    four_d = padding_attention_mask(mask)
    assert four_d.shape == (3, 1, 5, 5)
    assert four_d[0, 0, 3].tolist() == [False, False, True, True, True]   # real query: real keys only
    assert four_d[0, 0, 1].tolist() == [False, True, False, False, False]  # pad query: itself only
    assert four_d.any(-1).all()


def test_shift_logits_aligns_prediction_with_target():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float).reshape(2, 4, 3)
    shifted = shift_logits(logits)
    assert torch.equal(shifted[:, 1:], logits[:, :-1]) and torch.equal(shifted[:, 0], logits[:, 0])


def test_bad_masks_are_rejected_with_a_clear_message():
    model = micro_model()
    ids = tokens(2, 5)
    with pytest.raises(DiffucoderError, match="expected \\(batch, length\\)"):
        model(ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(DiffucoderError, match="boolean"):
        model(ids, attention_mask=torch.zeros(2, 1, 5, 5))
    with pytest.raises(DiffucoderError, match="expected \\(batch, 1, 5, 5\\)"):
        model(ids, attention_mask=torch.ones(2, 1, 5, 4, dtype=torch.bool))


def test_registered_with_auto_classes():
    cfg = micro_model().config
    assert type(AutoModel.from_config(cfg)) is DreamModel
    assert type(AutoModelForCausalLM.from_config(cfg)) is DreamModel


def test_state_dict_names_are_qwen2s():
    names = set(micro_model().state_dict())
    layer = {f"model.layers.0.{n}" for n in (
        "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
        "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
        "mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")}
    assert layer | {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= names
    assert "model.layers.0.self_attn.o_proj.bias" not in names
    assert len(names) == 3 + 2 * len(layer)


def test_activation_checkpointing_gives_the_same_gradients_with_padding():
    model = micro_model().train()
    ids, mask = left_pad([tokens(1, 6)[0], tokens(1, 3, seed=2)[0]])
    model(ids, attention_mask=mask).logits.square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(ids, attention_mask=mask).logits.square().mean().backward()
    for expected, param in zip(plain, model.parameters()):
        torch.testing.assert_close(param.grad, expected)
