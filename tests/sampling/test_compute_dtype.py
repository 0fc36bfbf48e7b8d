"""``sampling.compute_dtype``: the token draw and the confidences in float32 (the default) or, as the
released sampler computes them, in the model's dtype (bf16), where exact ties are common. Expected
values are computed directly in the test, in the dtype asked for."""
import pytest
import torch

from diffucoder.config import ConfigError, load_config
from diffucoder.config.recipes import recipe_path
from diffucoder.sampling import SamplingConfig, diffusion_generate, sample_tokens
from diffucoder.sampling.step import denoise_step

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def logits_batch(rows=6, vocab=40, seed=0):
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3.0


def direct_confidence(logits: torch.Tensor, dtype: torch.dtype, alg: str) -> torch.Tensor:
    """Greedy confidences computed step by step in ``dtype``, as the reference sampler writes them."""
    probs = torch.softmax(logits.to(dtype), dim=-1)
    if alg == "maskgit_plus":
        return probs.max(dim=-1).values
    if alg == "topk_margin":
        ordered = torch.sort(probs, dim=-1, descending=True).values
        return ordered[:, 0] - ordered[:, 1]
    return torch.sum(probs * torch.log(probs + 1e-10), dim=-1)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
def test_greedy_confidences_equal_a_direct_computation_in_that_dtype(compute_dtype, alg):
    logits = logits_batch()
    tokens, confidence = sample_tokens(logits, temperature=0.0, top_p=1.0, top_k=0, alg=alg, generator=None,
                                       compute_dtype=compute_dtype)
    expected = direct_confidence(logits, DTYPES[compute_dtype], alg)
    assert confidence.dtype == DTYPES[compute_dtype]
    assert torch.equal(confidence, expected)
    assert torch.equal(tokens, torch.softmax(logits.to(DTYPES[compute_dtype]), -1).argmax(-1))


def test_bf16_and_fp32_confidences_differ_by_the_rounding():
    logits = logits_batch()
    fp32 = sample_tokens(logits, temperature=0.0, top_p=1.0, top_k=0, alg="entropy", generator=None)[1]
    bf16 = sample_tokens(logits, temperature=0.0, top_p=1.0, top_k=0, alg="entropy", generator=None,
                         compute_dtype="bfloat16")[1]
    assert fp32.dtype == torch.float32 and not torch.equal(fp32, bf16.float())
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_sampled_tokens_and_their_probability_in_that_dtype(compute_dtype):
    logits = logits_batch(rows=50, seed=3)
    dtype = DTYPES[compute_dtype]
    tokens, confidence = sample_tokens(logits, temperature=0.7, top_p=1.0, top_k=0, alg="maskgit_plus",
                                       generator=torch.Generator().manual_seed(5), compute_dtype=compute_dtype)
    probs = torch.softmax(logits.to(dtype) / 0.7, dim=-1)
    expected_tokens = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(5)).squeeze(-1)
    assert torch.equal(tokens, expected_tokens)
    assert torch.equal(confidence, probs.gather(-1, expected_tokens[:, None]).squeeze(-1))


def test_model_dtype_follows_the_logits():
    logits = logits_batch()
    for dtype in (torch.bfloat16, torch.float32):
        confidence = sample_tokens(logits.to(dtype), temperature=0.0, top_p=1.0, top_k=0, alg="entropy",
                                   generator=None, compute_dtype="model")[1]
        assert confidence.dtype == dtype and torch.equal(confidence, direct_confidence(logits.to(dtype), dtype,
                                                                                       "entropy"))
    # float32 (the default) upcasts bf16 logits before anything is computed
    upcast = sample_tokens(logits.to(torch.bfloat16), temperature=0.0, top_p=1.0, top_k=0, alg="entropy",
                           generator=None)[1]
    assert upcast.dtype == torch.float32
    assert torch.equal(upcast, direct_confidence(logits.to(torch.bfloat16).float(), torch.float32, "entropy"))


def test_bf16_ties_are_broken_left_most_where_fp32_sees_an_order():
    """Three masked positions whose logits differ by less than bf16 resolves (spacing 2**-6 at 2.0):
    in fp32 the right-most is the most confident; in bf16 all three tie and the left-most is taken."""
    logits = torch.zeros(1, 3, 4)
    logits[0, :, 0] = torch.tensor([2.0, 2.0004, 2.0008])
    block = torch.full((1, 3), 99)
    masked = torch.ones(1, 3, dtype=torch.bool)
    chosen = {}
    for compute_dtype in ("float32", "bfloat16"):
        cfg = SamplingConfig(temperature=0.0, top_p=1.0, alg="maskgit_plus", compute_dtype=compute_dtype)
        _, chosen[compute_dtype], _ = denoise_step(logits, block, masked, torch.tensor([1]), cfg, None)
    assert chosen["float32"].tolist() == [[False, False, True]]
    assert chosen["bfloat16"].tolist() == [[True, False, False]]


def test_the_key_and_its_presets(model):
    assert SamplingConfig().compute_dtype == "float32"
    assert load_config(SamplingConfig, recipe_path("tiny-cpu", "sampling")).compute_dtype == "float32"
    # the 7B preset decodes in the model's dtype (bf16 on GPU), as the released sampler does
    assert load_config(SamplingConfig, recipe_path("7b-gpu", "sampling")).compute_dtype == "model"
    with pytest.raises(ConfigError, match="compute_dtype"):
        load_config(SamplingConfig, None, ["compute_dtype=float64"])
    ids = torch.tensor([[5, 6, 7]])
    for compute_dtype in ("float32", "bfloat16", "model"):
        out = diffusion_generate(model, ids, None, SamplingConfig(max_new_tokens=6, steps=3, temperature=0.0,
                                                                  compute_dtype=compute_dtype))
        assert out.sequences.shape == (1, 9) and not (out.completions == model.config.mask_token_id).any()
