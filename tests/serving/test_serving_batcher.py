"""The batcher in one event loop with the real decoder: grouping, limits, back-pressure, drain."""
from __future__ import annotations

import asyncio

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
