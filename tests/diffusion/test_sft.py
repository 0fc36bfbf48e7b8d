import pytest
import torch

from diffucoder.diffusion import (DiffusionLossConfig, diffusion_loss, forward_process, masked_diffusion_loss,
                                  sft_batch, sft_maskable)
from diffucoder.errors import DiffucoderError
from diffucoder.model import build_config, build_model

DLM_PAD, EOS, MASK, PAD = 60, 61, 63, 62


def test_layout_prompt_response_eos_then_dlm_pad():
    batch = sft_batch([[1, 2, 3], [4]], [[5, 6], [7, 8, 9, 10, 11, 12, 13]], seq_len=8,
                      dlm_pad_token_id=DLM_PAD, eos_token_id=EOS)
    assert batch.tokens.tolist() == [[1, 2, 3, 5, 6, EOS, DLM_PAD, DLM_PAD], [4, 7, 8, 9, 10, 11, 12, 13]]
    assert batch.prompt_mask.int().tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]
    assert batch.attention_mask.all()  # dlm_pad is content the model learns to produce
    with pytest.raises(DiffucoderError, match="prompt of 8 tokens"):
        sft_batch([[1] * 8], [[2]], seq_len=8, dlm_pad_token_id=DLM_PAD)
    with pytest.raises(DiffucoderError, match="2 prompts but 1 responses"):
        sft_batch([[1], [2]], [[3]], seq_len=8, dlm_pad_token_id=DLM_PAD)



def test_canvas_lengths_end_rows_early_and_keep_the_tail_out_of_the_loss():
    batch = sft_batch([[1, 2], [3]], [[4], [5, 6]], seq_len=8, dlm_pad_token_id=DLM_PAD, eos_token_id=EOS,
                      canvas_lengths=[5, 8])
    assert batch.tokens.tolist() == [[1, 2, 4, EOS, DLM_PAD, DLM_PAD, DLM_PAD, DLM_PAD],
                                     [3, 5, 6, EOS, DLM_PAD, DLM_PAD, DLM_PAD, DLM_PAD]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1, 0, 0, 0], [1] * 8]
    maskable = sft_maskable(batch.prompt_mask, batch.attention_mask)
    assert not maskable[0, 5:].any() and maskable[1, 3:].all()     # past the canvas: never scored
    with pytest.raises(DiffucoderError, match="canvas length 2 must exceed the prompt"):
        sft_batch([[1, 2]], [[4]], seq_len=8, dlm_pad_token_id=DLM_PAD, canvas_lengths=[2])
    with pytest.raises(DiffucoderError, match="1 canvas lengths for 2 rows"):
        sft_batch([[1], [2]], [[3], [4]], seq_len=8, dlm_pad_token_id=DLM_PAD, canvas_lengths=[4])

def random_sft(seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 12, (6, 2), generator=g).tolist()
    prompts = [torch.randint(0, 50, (p,), generator=g).tolist() for p, _ in lengths]
    responses = [torch.randint(0, 50, (r,), generator=g).tolist() for _, r in lengths]
    return sft_batch(prompts, responses, seq_len=24, dlm_pad_token_id=DLM_PAD, eos_token_id=EOS)


def test_prompt_is_never_masked_nor_scored_over_many_draws():
    seen_masked = torch.zeros(6, 24, dtype=torch.bool)
    for seed in range(300):
        batch = random_sft(seed % 10)
        maskable = sft_maskable(batch.prompt_mask, batch.attention_mask)
        assert not (maskable & batch.prompt_mask).any()
        noisy, masked, t = forward_process(batch.tokens, maskable, MASK, generator=torch.Generator().manual_seed(seed))
        assert not masked[batch.prompt_mask].any()
        assert torch.equal(noisy[batch.prompt_mask], batch.tokens[batch.prompt_mask])
        logits = torch.randn(6, 24, 64, generator=torch.Generator().manual_seed(seed), requires_grad=True)
        masked_diffusion_loss(logits, batch.tokens, masked, t, eligible=maskable).backward()
        # The logit at i-1 scores token i: no prompt token is ever a target.
        scored_targets = torch.zeros_like(masked)
        scored_targets[:, 1:] = logits.grad[:, :-1].abs().sum(-1) > 0
        assert not (scored_targets & batch.prompt_mask).any()
        if seed % 10 == 0:
            seen_masked |= masked
    batch = random_sft(0)
    response_and_pad = ~batch.prompt_mask
    assert seen_masked[response_and_pad].all()  # every response and dlm_pad token gets masked at some point
    assert (batch.tokens[response_and_pad] == DLM_PAD).any()


def test_sft_through_diffusion_loss_keeps_the_prompt_clean():
    model = build_model(build_config("tiny", vocab_size=64, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                     mask_token_id=MASK, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS,
                                     dlm_pad_token_id=DLM_PAD), seed=0)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))  # the noised input ids
    batch = random_sft(3)
    for seed in range(20):
        out = diffusion_loss(model, batch.tokens, attention_mask=batch.attention_mask, prompt_mask=batch.prompt_mask,
                             mask_token_id=MASK, pad_token_id=PAD, config=DiffusionLossConfig(),
                             generator=torch.Generator().manual_seed(seed))
        assert torch.isfinite(out.loss)
        assert out.num_eligible == int(sft_maskable(batch.prompt_mask).sum())
    noisy = torch.stack(seen)
    assert not (noisy[:, batch.prompt_mask] == MASK).any()
    assert (noisy[:, ~batch.prompt_mask] == MASK).any()
