"""Masked diffusion: the training loss (``loss``) and the SFT row layout (``sft``).

    from diffucoder.diffusion import DiffusionLossConfig, diffusion_loss, sft_batch
    out = diffusion_loss(model, tokens, attention_mask=pad_mask, config=DiffusionLossConfig(),
                         mask_token_id=mask_token_id, pad_token_id=pad_id, step=step, generator=g)
    batch = sft_batch(prompts, responses, seq_len=2048, dlm_pad_token_id=dlm_pad, eos_token_id=eos)

``loss`` reads top to bottom: the forward (noising) process, the 1/t-weighted shifted
cross-entropy and its normalisers, attention-mask annealing, truncation / clean-prefix
augmentations, and ``diffusion_loss``, which does all of it for one batch.
"""
from diffucoder.diffusion.loss import (NORMALISERS, DiffusionLossConfig, DiffusionLossOutput, NoisedBatch,
                                       anneal_ratio, annealed_attention_mask, choose_augmented_rows, clean_prefix,
                                       diffusion_loss, forward_process, masked_diffusion_loss, random_truncation,
                                       sample_t, scorable_mask, uniform)
from diffucoder.diffusion.sft import SFTBatch, sft_batch, sft_maskable
from diffucoder.model.dream import shift_logits

__all__ = [
    "DiffusionLossConfig", "DiffusionLossOutput", "NORMALISERS", "NoisedBatch", "SFTBatch", "anneal_ratio",
    "annealed_attention_mask", "choose_augmented_rows", "clean_prefix", "diffusion_loss", "forward_process",
    "masked_diffusion_loss", "random_truncation", "sample_t", "scorable_mask", "sft_batch", "sft_maskable",
    "shift_logits", "uniform",
]
