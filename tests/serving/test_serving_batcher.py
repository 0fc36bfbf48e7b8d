"""The batcher in one event loop with the real decoder: grouping, limits, back-pressure, drain."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from diffucoder.config import load_config
from diffucoder.serving import QueueFull, RequestError, ServeConfig, ShuttingDown
from diffucoder.serving.batcher import Batcher
from diffucoder.serving.engine import Engine
from diffucoder.serving.requests import RequestParser


@pytest.fixture(scope="module")
def engine(served_model_dir):
    return Engine.load(served_model_dir, ServeConfig())


@pytest.fixture(scope="module")
def parser(engine):
    return RequestParser(load_config(ServeConfig, None, ["defaults.max_tokens=4"]), engine)


@pytest.fixture(scope="module")
def invariant_parser(engine):
    """Rows whose forward is unpadded and their own: a row's output never depends on its batch."""
    return RequestParser(load_config(ServeConfig, None, ["defaults.max_tokens=4", "sampler.batch_invariant=true"]),
                         engine)


def rows(parser, *prompts, **fields):
    return [parser.completion({"prompt": p, **fields}).requests[0] for p in prompts]


class Recorder:
    """The engine's decode, noting each batch's size (and failing batches that hold ``poison``)."""

    def __init__(self, engine, poison=None):
        self.engine, self.poison, self.batches = engine, poison, []

    def __call__(self, batch):
        self.batches.append(len(batch))
        if self.poison is not None and any(row.prompt_ids == self.poison for row in batch):
            raise ValueError("cannot decode this row")
        return self.engine.generate(batch)


async def started(run, **options) -> Batcher:
    batcher = Batcher(run, **{"max_batch_size": 8, "max_wait_s": 0.05, "queue_size": 64} | options)
    await batcher.start()
    return batcher


@pytest.mark.asyncio
async def test_concurrent_rows_share_a_batch_and_keep_their_order(engine, parser):
    record = Recorder(engine)
    batcher = await started(record)
    batch = rows(parser, "x = 1", "x = 2", "y = 3")
    results = await asyncio.gather(*(batcher.submit([row]) for row in batch))
    assert record.batches == [3]
    assert [r[0] for r in results] == engine.generate(batch)
    await batcher.close()


@pytest.mark.asyncio
async def test_batch_size_cap_and_incompatible_rows_apart(engine, parser):
    record = Recorder(engine)
    batcher = await started(record, max_batch_size=2)
    mixed = rows(parser, "a", "b", "c", "d", "e") + rows(parser, "f", max_tokens=3)
    await asyncio.gather(*(batcher.submit([row]) for row in mixed))
    assert sorted(record.batches) == [1, 1, 2, 2]   # 5 rows of one key in 2+2+1, the other key alone
    await batcher.close()


@pytest.mark.asyncio
async def test_a_full_queue_refuses_the_whole_request(engine, parser):
    batcher = await started(Recorder(engine), queue_size=3, max_wait_s=0.2)
    first = batcher.admit(rows(parser, "a", "b"))
    with pytest.raises(QueueFull) as err:
        batcher.admit(rows(parser, "c", "d"))           # 2 + 2 > 3: none of them queued
    assert err.value.status == 429 and err.value.retry_after >= 1 and batcher.waiting == 2
    assert len(await batcher.wait(first)) == 2
    await batcher.close()


@pytest.mark.asyncio
async def test_drain_finishes_admitted_rows_and_refuses_new_ones(engine, parser):
    record = Recorder(engine)
    batcher = await started(record, max_wait_s=5.0)      # would wait 5 s for company ...
    admitted = batcher.admit(rows(parser, "a", "b"))
    batcher.begin_drain()                                # ... but a drain decodes at once
    with pytest.raises(ShuttingDown) as err:
        batcher.admit(rows(parser, "c"))
    assert err.value.status == 503 and err.value.retry_after >= 1
    assert await batcher.drained(timeout=5.0)
    assert len(await batcher.wait(admitted)) == 2 and record.batches == [2]
    await batcher.close()


@pytest.mark.asyncio
async def test_close_answers_rows_still_waiting(engine, parser):
    batcher = await started(Recorder(engine), max_wait_s=5.0, max_batch_size=8)
    waiting = batcher.admit(rows(parser, "a"))
    await asyncio.sleep(0.05)
    await batcher.close()
    with pytest.raises(ShuttingDown):
        await batcher.wait(waiting)


@pytest.mark.asyncio
async def test_a_failing_row_fails_alone(engine, parser):
    batch = rows(parser, "x = 1", "x = 2", "x = 3")
    record = Recorder(engine, poison=batch[1].prompt_ids)
    batcher = await started(record)
    results = await asyncio.gather(*(batcher.submit([row]) for row in batch), return_exceptions=True)
    assert isinstance(results[1], RequestError) and results[1].status == 500
    assert [results[0][0], results[2][0]] == engine.generate([batch[0], batch[2]])
    assert record.batches == [3, 1, 1, 1]
    await batcher.close()


# -- continuous batching: rows join and leave the running set at denoising-step boundaries ----------

class CountingStepper:
    """The engine as the batcher's stepper, noting each step's rows (and failing rows that hold ``poison``)."""

    def __init__(self, engine, poison=None):
        self.engine, self.poison, self.steps = engine, poison, []

    def steppable(self, row):
        return self.engine.steppable(row)

    def start(self, row):
        state = self.engine.start(row)
        state.poisoned = row.prompt_ids == self.poison
        return state

    def step(self, states):
        self.steps.append(sorted(state.step for state in states))
        if any(state.poisoned for state in states):
            raise ValueError("cannot step this row")
        self.engine.step(states)

    def complete(self, row, state):
        return self.engine.complete(row, state)


def alone(engine, row):
    """The row decoded by the sampler on its own prompt, unpadded: the direct call."""
    return engine.generate([row])[0]


@pytest.mark.asyncio
async def test_rows_join_a_running_batch_at_step_boundaries_and_equal_the_sampler_alone(engine, invariant_parser):
    stepper = CountingStepper(engine)
    batcher = await started(Recorder(engine), stepper=stepper, max_wait_s=0.0)
    parser = invariant_parser
    first = rows(parser, "def add(a, b):", max_tokens=8, steps=8)
    later = rows(parser, "x = 1", "class Point:", max_tokens=8, steps=8, temperature=0.8, seed=3) + \
        rows(parser, "for i in range(3):", max_tokens=5, steps=5)
    running = asyncio.ensure_future(batcher.submit(first))
    while not stepper.steps or stepper.steps[-1][-1] < 2:    # the first row is 3 steps in
        await asyncio.sleep(0.001)
    joined = [asyncio.ensure_future(batcher.submit([row])) for row in later]
    results = [await running] + [await j for j in joined]
    assert any(len(set(steps)) > 1 for steps in stepper.steps), "no step held rows at different steps"
    assert max(len(steps) for steps in stepper.steps) == 4
    for row, result in zip(first + later, results):
        assert result == [alone(engine, row)]
    await batcher.close()


@pytest.mark.asyncio
async def test_a_client_gone_mid_decode_leaves_at_the_next_boundary(engine, parser):
    stepper = CountingStepper(engine)
    batcher = await started(Recorder(engine), stepper=stepper, max_wait_s=0.0)
    slow = asyncio.ensure_future(batcher.submit(rows(parser, "x = 1", max_tokens=32, steps=32)))
    while len(stepper.steps) < 2:
        await asyncio.sleep(0.001)
    slow.cancel()                                        # the client disconnected
    after = await batcher.submit(rows(parser, "y = 2"))  # the decoder is not wedged
    assert len(after) == 1 and len(stepper.steps) < 32
    assert await batcher.drained(timeout=5.0)
    await batcher.close()


@pytest.mark.asyncio
async def test_a_failing_row_fails_alone_in_the_running_set(engine, parser):
    batch = rows(parser, "x = 1", "x = 2", "x = 3")
    stepper = CountingStepper(engine, poison=batch[1].prompt_ids)
    batcher = await started(Recorder(engine), stepper=stepper, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit([row]) for row in batch), return_exceptions=True)
    assert isinstance(results[1], RequestError) and results[1].status == 500
    assert [results[0][0], results[2][0]] == [alone(engine, batch[0]), alone(engine, batch[2])]
    await batcher.close()


@pytest.mark.asyncio
async def test_approximate_rows_are_decoded_whole_between_steps(engine, parser):
    record, stepper = Recorder(engine), CountingStepper(engine)
    batcher = await started(record, stepper=stepper, max_wait_s=0.0)
    exact = rows(parser, "x = 1", max_tokens=16, steps=16)
    cached = [dataclasses.replace(row, sampling=dataclasses.replace(row.sampling, mode="approx_dual_cache",
                                                                    block_size=4))
              for row in rows(parser, "y = 2", max_tokens=8, steps=8)]
    got = await asyncio.gather(batcher.submit(exact), batcher.submit(cached))
    assert record.batches == [1] and len(stepper.steps) == 16
    assert got[1] == engine.generate(cached)
    await batcher.close()


@pytest.mark.asyncio
async def test_drain_lets_the_running_set_finish(engine, parser):
    stepper = CountingStepper(engine)
    batcher = await started(Recorder(engine), stepper=stepper, max_wait_s=5.0)
    admitted = batcher.admit(rows(parser, "a", "b", max_tokens=6, steps=6))
    batcher.begin_drain()                                 # no 5 s wait for company
    with pytest.raises(ShuttingDown):
        batcher.admit(rows(parser, "c"))
    assert await batcher.drained(timeout=5.0)
    assert len(await batcher.wait(admitted)) == 2 and len(stepper.steps) == 6
    await batcher.close()
