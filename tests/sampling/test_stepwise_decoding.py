"""Step-level decoding (``sampling.stepwise``): rows at different steps, lengths and samplers share
forwards, and each row's tokens equal the sampler's on that prompt alone."""
import pytest
import torch

from diffucoder.sampling import SamplingConfig, SamplingError, diffusion_generate
from diffucoder.sampling.stepwise import RowDecode, row_logits, step_rows

from sampling_helpers import micro_model, random_prompts

MASK = 511


@pytest.fixture(scope="module")
def model():
    return micro_model(layers=2, mask_token_id=MASK)


def alone(model, prompt, config, seed):
    """The direct call: the prompt as a batch of one, unpadded."""
    out = diffusion_generate(model, prompt[None], torch.ones(1, len(prompt), dtype=torch.long), config,
                             generator=torch.Generator().manual_seed(seed))
    return out.completions[0].tolist()


def run_staggered(model, jobs, join_every=2):
    """Start job i at step boundary ``i * join_every`` of the running batch; decode until all are done."""
    pending = list(enumerate(jobs))
    active: list[tuple[int, RowDecode]] = []
    finished: dict[int, list[int]] = {}
    boundary, widths = 0, []
    while pending or active:
        while pending and pending[0][0] * join_every <= boundary:
            index, (prompt, config, seed) = pending.pop(0)
            active.append((index, RowDecode.start(model, prompt, config, torch.Generator().manual_seed(seed))))
        steps_now = {row.step for _, row in active}
        widths.append(len(steps_now))
        step_rows(model, [row for _, row in active])
        for index, row in [pair for pair in active if pair[1].done]:
            finished[index] = row.completion.tolist()
        active = [pair for pair in active if not pair[1].done]
        boundary += 1
    return [finished[i] for i in range(len(jobs))], widths


def test_rows_joining_at_step_boundaries_equal_each_prompt_decoded_alone(model):
    prompts = random_prompts([5, 12, 3, 9, 7], seed=1, high=500)
    configs = [
        SamplingConfig(max_new_tokens=8, steps=8, temperature=0.0, alg="entropy", batch_invariant=True),
        SamplingConfig(max_new_tokens=12, steps=6, temperature=0.0, alg="maskgit_plus", batch_invariant=True),
        SamplingConfig(max_new_tokens=8, steps=8, temperature=0.7, top_p=0.9, alg="entropy", batch_invariant=True),
        SamplingConfig(max_new_tokens=10, steps=10, temperature=0.0, alg="entropy", threshold=0.05,
                       batch_invariant=True),
        SamplingConfig(max_new_tokens=6, steps=6, temperature=1.0, alg="origin", batch_invariant=True),
    ]
    jobs = [(prompt, config, 100 + i) for i, (prompt, config) in enumerate(zip(prompts, configs))]
    stepped, widths = run_staggered(model, jobs)
    assert max(widths) >= 3, "the test must make rows at three or more different steps share a step"
    for (prompt, config, seed), tokens in zip(jobs, stepped):
        assert tokens == alone(model, prompt, config, seed)
        assert MASK not in tokens


def test_a_packed_shared_forward_gives_each_row_its_own_logits_to_rounding(model):
    prompts = random_prompts([4, 11, 7], seed=2, high=500)
    rows = [RowDecode.start(model, p, SamplingConfig(max_new_tokens=n, steps=n, temperature=0.0),
                            torch.Generator().manual_seed(0)) for p, n in zip(prompts, (6, 9, 4))]
    shared = row_logits(model, rows)
    for row, logits in zip(rows, shared):
        ones = torch.ones(1, row.length, dtype=torch.long)
        direct = model(row.x[None], attention_mask=ones).logits[0, row.prompt_length - 1:-1]
        assert logits.shape == direct.shape == (row.config.max_new_tokens, direct.shape[-1])
        torch.testing.assert_close(logits, direct, rtol=1e-5, atol=1e-5)


def test_idle_rows_skip_the_forward_and_a_threshold_row_ends_in_fewer_forwards(model):
    prompt = random_prompts([6], seed=3, high=500)[0]
    config = SamplingConfig(max_new_tokens=4, steps=8, temperature=0.0)   # 8 steps for 4 tokens: some idle
    row = RowDecode.start(model, prompt, config, torch.Generator().manual_seed(0))
    while not row.done:
        step_rows(model, [row])
    direct = diffusion_generate(model, prompt[None], config=config)
    assert row.step == 8 and row.forward_passes == direct.forward_passes < 8
    quick = RowDecode.start(model, prompt, SamplingConfig(max_new_tokens=8, steps=8, temperature=0.0,
                                                          threshold=1e-9), torch.Generator().manual_seed(0))
    while not quick.done:
        step_rows(model, [quick])
    assert quick.forward_passes == 1 and MASK not in quick.completion.tolist()


def test_start_refuses_what_the_sampler_refuses(model):
    with pytest.raises(SamplingError, match="mask token id 511"):
        RowDecode.start(model, [1, MASK, 2], SamplingConfig(max_new_tokens=4, steps=4), torch.Generator())
    with pytest.raises(SamplingError, match="empty"):
        RowDecode.start(model, [], SamplingConfig(max_new_tokens=4, steps=4), torch.Generator())
    with pytest.raises(SamplingError, match="block by block"):
        RowDecode.start(model, [1, 2], SamplingConfig(max_new_tokens=8, steps=8, mode="approx_dual_cache",
                                                      block_size=4), torch.Generator())


def test_rows_of_unlike_lengths_share_one_forward_with_no_padding(model):
    config = SamplingConfig(max_new_tokens=4, steps=4, temperature=0.0)
    rows = [RowDecode.start(model, p, config, torch.Generator()) for p in random_prompts([16, 14, 12, 6, 5, 1])]
    seen = []   # the token ids each forward embeds
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    try:
        shared = row_logits(model, rows)
    finally:
        hook.remove()
    assert seen == [torch.Size([1, 20 + 18 + 16 + 10 + 9 + 5])]   # prompts + 4 completion tokens each
    for row, logits in zip(rows, shared):
        direct = model(row.x[None]).logits[0, row.prompt_length - 1:-1]
        torch.testing.assert_close(logits, direct, rtol=1e-5, atol=1e-5)


def test_greedy_rows_of_one_config_step_together_as_each_alone(model):
    """Deterministic rows share the sampler's batched step; their tokens are each row's own."""
    config = SamplingConfig(max_new_tokens=8, steps=8, temperature=0.0, alg="entropy", batch_invariant=True)
    prompts = random_prompts([5, 9, 3, 7], seed=4, high=500)
    rows = [RowDecode.start(model, p, config, torch.Generator().manual_seed(0)) for p in prompts]
    for _ in range(3):   # rows at different steps: the later ones start 3 steps behind
        step_rows(model, rows[:2])
    while not all(row.done for row in rows):
        step_rows(model, [row for row in rows if not row.done])
    for prompt, row in zip(prompts, rows):
        assert row.completion.tolist() == alone(model, prompt, config, 0)
