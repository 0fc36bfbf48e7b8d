"""``Batcher``: concurrent requests gathered into padded diffusion batches, with back-pressure.

    batcher = Batcher(engine.generate, max_batch_size=16, max_wait_s=0.01, queue_size=256)
    await batcher.start()                         # inside the server's event loop
    completions = await batcher.submit(rows)      # all rows admitted, or QueueFull (429) / ShuttingDown (503)
    batcher.begin_drain(); await batcher.drained(timeout=30); await batcher.close()

Rows wait in groups of equal ``batch_key`` (same length, schedule and sampler). The
scheduler takes the group whose oldest row waited longest, gives it up to ``max_wait_s``
(from that row's arrival) to reach ``max_batch_size`` rows, and hands the batch to ONE
worker thread, so the event loop keeps answering (health checks, new requests) while the
model runs; rows arriving meanwhile form the next batch. At most ``queue_size`` rows wait;
a request that would exceed it is refused whole with a Retry-After estimated from recent
batch times. If a batch fails, its rows are retried one by one so a bad row fails alone.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from diffucoder.serving import metrics
from diffucoder.serving.errors import QueueFull, RequestError, ShuttingDown

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    row: object
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(self, run_batch: Callable[[list], list], *, max_batch_size: int, max_wait_s: float,
                 queue_size: int, retry_after_s: int = 1):
        self.run_batch, self.max_batch_size, self.max_wait_s = run_batch, max_batch_size, max_wait_s
        self.queue_size, self.retry_after_s = queue_size, retry_after_s
        self._groups: dict[tuple, deque[_Waiting]] = {}
        self.waiting = 0          # rows admitted and not yet handed to the worker
        self.decoding = 0         # rows in the worker now
        self.draining = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffucoder-decode")
        self._task: asyncio.Task | None = None
        self._in_worker: list[_Waiting] = []
        self._batch_seconds = 0.0  # moving average, for Retry-After

    async def start(self) -> None:
        self._idle.set()
        self._task = asyncio.create_task(self._schedule(), name="diffucoder-batcher")

    # -- admission -----------------------------------------------------------------------

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: batches ahead x recent batch time."""
        batches_ahead = math.ceil((self.waiting + 1) / self.max_batch_size) + (1 if self.decoding else 0)
        return max(self.retry_after_s, min(3600, math.ceil(batches_ahead * self._batch_seconds)))

    async def submit(self, rows: list) -> list:
        """Decode ``rows`` (each with a ``batch_key``); their completions in order."""
        return await self.wait(self.admit(rows))

    def admit(self, rows: list) -> list[_Waiting]:
        """Queue ``rows`` now, all or none: ``QueueFull`` (429) or ``ShuttingDown`` (503) otherwise."""
        if self.draining or self._task is None or self._task.done():
            raise ShuttingDown(self.retry_after())
        if self.waiting + len(rows) > self.queue_size:
            raise QueueFull(self.retry_after(), self.waiting)
        loop = asyncio.get_running_loop()
        entries = [_Waiting(row, loop.create_future()) for row in rows]
        for entry in entries:
            self._groups.setdefault(entry.row.batch_key, deque()).append(entry)
        self._count(len(entries))
        self._wakeup.set()
        return entries

    async def wait(self, entries: list[_Waiting]) -> list:
        """The completions of admitted rows, in order."""
        try:
            return list(await asyncio.gather(*(entry.future for entry in entries)))
        except BaseException:  # the client went away (or a row failed): drop rows not yet decoded
            for entry in entries:
                entry.future.cancel()
            raise

    def _count(self, change: int) -> None:
        self.waiting += change
        metrics.QUEUE_DEPTH.set(self.waiting)
        if self.waiting or self.decoding:
            self._idle.clear()
        else:
            self._idle.set()

    # -- scheduling ----------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            if not self.waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            key = min(self._groups, key=lambda k: self._groups[k][0].arrived)
            group = self._groups[key]
            deadline = group[0].arrived + self.max_wait_s
            while len(group) < self.max_batch_size and not self.draining:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = [group.popleft() for _ in range(min(len(group), self.max_batch_size))]
            if not group:
                del self._groups[key]
            self.decoding = len(batch)
            self._count(-len(batch))
            live = [entry for entry in batch if not entry.future.done()]  # cancelled ones are skipped
            self._in_worker = live
            try:
                if live:
                    await self._run(live)
            finally:
                self._in_worker = []
                self.decoding = 0
                metrics.DECODING.set(0)
                self._count(0)

    async def _run(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        rows = [entry.row for entry in batch]
        metrics.DECODING.set(len(rows))
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, rows)
        except Exception:
            if len(batch) == 1:
                log.exception("decoding a request failed")
                _settle(batch[0].future, exception=RequestError(
                    "internal error while decoding (logged on the server)", status=500,
                    code="internal_error", type="server_error"))
                return
            log.exception("a batch of %d failed; retrying its rows one by one", len(batch))
            for entry in batch:
                await self._run([entry])
            return
        seconds = time.perf_counter() - started
        self._batch_seconds = seconds if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * seconds
        metrics.observe_batch(len(rows), len(rows) * rows[0].sampling.max_new_tokens, seconds)
        for entry, result in zip(batch, results):
            _settle(entry.future, result=result)

    # -- shutdown ------------------------------------------------------------------------

    def begin_drain(self) -> None:
        """Refuse new rows (503); rows already admitted are still decoded, without waiting for company."""
        self.draining = True
        self._wakeup.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing is queued or decoding; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Stop scheduling; rows still waiting get a 503. The running batch is not interrupted."""
        self.draining = True
        in_worker = list(self._in_worker)  # the task's cleanup forgets them when cancelled
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for entry in [*in_worker, *(entry for group in self._groups.values() for entry in group)]:
            _settle(entry.future, exception=ShuttingDown(self.retry_after_s))
        self._groups.clear()
        self._count(-self.waiting)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future, result=None, exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
