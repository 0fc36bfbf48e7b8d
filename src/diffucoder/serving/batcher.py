"""``Batcher``: concurrent requests decoded together, with back-pressure.

    batcher = Batcher(engine.generate, stepper=engine, max_batch_size=16, max_wait_s=0.01, queue_size=256)
    await batcher.start()                         # inside the server's event loop
    completions = await batcher.submit(rows)      # all rows admitted, or QueueFull (429) / ShuttingDown (503)
    batcher.begin_drain(); await batcher.drained(timeout=30); await batcher.close()

Continuous batching (with a ``stepper``, for the rows it can step: the exact mode). A running
set of at most ``max_batch_size`` rows advances one denoising step at a time, the rows that
commit sharing one forward (``sampling.stepwise``: packed end to end, no padding); at each step
boundary finished rows leave (answered at once) and waiting rows join, oldest first, whatever
step the others are at. An idle decoder gives the first rows up to ``max_wait_s`` to gather.

Whole batches (rows the stepper cannot step: the approximate cached modes; every row without
a stepper). Rows wait in groups of equal ``batch_key`` (same length, schedule and sampler); the
oldest group gets up to ``max_wait_s`` from its first row's arrival to reach ``max_batch_size``
rows and is decoded whole, between two steps of the running set if one is running.

Decoding runs on ONE worker thread, so the event loop keeps answering (health checks, new
requests) while the model runs. At most ``queue_size`` rows wait; a request that would exceed
it is refused whole with a Retry-After estimated from recent decode times. If a batch or step
fails, its rows are retried one by one so a bad row fails alone (a 500).
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
from typing import Any, Callable, Protocol

from diffucoder.serving import metrics
from diffucoder.serving.errors import QueueFull, RequestError, ShuttingDown

log = logging.getLogger(__name__)


class Stepper(Protocol):
    """What continuous batching needs of the decoder (``Engine`` has it)."""

    def steppable(self, row) -> bool: ...
    def start(self, row) -> Any: ...            # the row's decode state, with ``done``
    def step(self, states: list) -> None: ...   # one denoising step of every state
    def complete(self, row, state) -> Any: ...  # the row's answer once its state is done


@dataclass
class _Waiting:
    row: object
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)
    state: Any = None     # the decode state while the row is in the running set


class Batcher:
    def __init__(self, run_batch: Callable[[list], list], *, max_batch_size: int, max_wait_s: float,
                 queue_size: int, retry_after_s: int = 1, stepper: Stepper | None = None):
        self.run_batch, self.max_batch_size, self.max_wait_s = run_batch, max_batch_size, max_wait_s
        self.queue_size, self.retry_after_s, self.stepper = queue_size, retry_after_s, stepper
        self._groups: dict[tuple, deque[_Waiting]] = {}   # whole-batch rows, by batch key
        self._joining: deque[_Waiting] = deque()          # rows waiting to join the running set
        self._running: list[_Waiting] = []                # the running set (continuous batching)
        self.waiting = 0          # rows admitted and not yet decoding
        self.decoding = 0         # rows in the worker now
        self.draining = False
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffucoder-decode")
        self._task: asyncio.Task | None = None
        self._in_worker: list[_Waiting] = []
        self._batch_seconds = 0.0  # moving average of a decode (a batch, or a row from join to answer)

    async def start(self) -> None:
        self._idle.set()
        self._task = asyncio.create_task(self._schedule(), name="diffucoder-batcher")

    # -- admission -----------------------------------------------------------------------

    def retry_after(self) -> int:
        """Seconds until the queue has likely moved on: batches ahead x recent decode time."""
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
            if self.stepper is not None and self.stepper.steppable(entry.row):
                self._joining.append(entry)
            else:
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
            self._join()
            if self._groups and (not self._running or self._oldest_group_waited() >= self.max_wait_s):
                await self._run_group(gather=not self._running)
            elif self._running:
                await self._step()
            elif self._joining:
                await self._gather_joiners()
            else:
                self._wakeup.clear()
                await self._wakeup.wait()

    async def _until(self, deadline: float, enough: Callable[[], bool]) -> None:
        """Wait for new rows until ``enough()`` or ``deadline`` (or a drain begins)."""
        while not enough() and not self.draining:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _oldest_group_waited(self) -> float:
        return time.monotonic() - min(group[0].arrived for group in self._groups.values())

    # -- whole batches -------------------------------------------------------------------

    async def _run_group(self, gather: bool) -> None:
        key = min(self._groups, key=lambda k: self._groups[k][0].arrived)
        group = self._groups[key]
        if gather:   # an idle decoder lets the batch fill
            await self._until(group[0].arrived + self.max_wait_s, lambda: len(group) >= self.max_batch_size)
        batch = [group.popleft() for _ in range(min(len(group), self.max_batch_size))]
        if not group:
            del self._groups[key]
        self._count(-len(batch))
        live = [entry for entry in batch if not entry.future.done()]  # cancelled ones are skipped
        self.decoding += len(live)
        self._in_worker = live
        try:
            if live:
                await self._run(live)
        finally:
            self._in_worker = []
            self.decoding -= len(live)
            metrics.DECODING.set(self.decoding)
            self._count(0)

    async def _run(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        rows = [entry.row for entry in batch]
        metrics.DECODING.set(self.decoding)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, rows)
        except Exception:
            if len(batch) == 1:
                log.exception("decoding a request failed")
                _settle(batch[0].future, exception=_internal_error())
                return
            log.exception("a batch of %d failed; retrying its rows one by one", len(batch))
            for entry in batch:
                await self._run([entry])
            return
        seconds = time.perf_counter() - started
        self._note_decode(seconds)
        metrics.observe_batch(len(rows), len(rows) * rows[0].sampling.max_new_tokens, seconds)
        for entry, result in zip(batch, results):
            _settle(entry.future, result=result)

    def _note_decode(self, seconds: float) -> None:
        self._batch_seconds = seconds if not self._batch_seconds else 0.8 * self._batch_seconds + 0.2 * seconds

    # -- continuous batching -------------------------------------------------------------

    async def _gather_joiners(self) -> None:
        """An idle running set: give the first rows up to ``max_wait_s`` to gather, then start."""
        await self._until(self._joining[0].arrived + self.max_wait_s,
                          lambda: len(self._joining) >= self.max_batch_size)
        self._join(gathered=True)

    def _join(self, gathered: bool = False) -> None:
        """At a step boundary: waiting rows join the running set, oldest first, while it has room.
        An empty set takes rows only once gathered (or draining)."""
        if not self._joining or (not self._running and not gathered and not self.draining):
            return
        now = time.monotonic()
        while self._joining and len(self._running) < self.max_batch_size:
            entry = self._joining.popleft()
            self._count(-1)
            if entry.future.done():   # the client went away while it waited
                continue
            try:
                entry.state = self.stepper.start(entry.row)
            except Exception:
                log.exception("starting a request's decode failed")
                _settle(entry.future, exception=_internal_error())
                continue
            entry.arrived = now       # from here on: when it joined (for the row's decode time)
            self._running.append(entry)
        self.decoding = len(self._running) + len(self._in_worker)
        metrics.DECODING.set(self.decoding)
        self._count(0)

    async def _step(self) -> None:
        """One denoising step of the running set; answer the rows it finished, drop abandoned ones."""
        loop = asyncio.get_running_loop()
        running = [entry for entry in self._running if not entry.future.done()]
        started = time.perf_counter()
        try:
            if running:
                await loop.run_in_executor(self._executor, self.stepper.step, [e.state for e in running])
        except Exception:
            if len(running) == 1:
                log.exception("a decoding step failed")
                _settle(running[0].future, exception=_internal_error())
            else:
                log.exception("a step of %d rows failed; retrying them one by one", len(running))
                for entry in running:
                    try:
                        await loop.run_in_executor(self._executor, self.stepper.step, [entry.state])
                    except Exception:
                        log.exception("a decoding step failed")
                        _settle(entry.future, exception=_internal_error())
        if running:
            metrics.observe_step(len(running), time.perf_counter() - started)
        now, still = time.monotonic(), []
        for entry in self._running:
            if entry.future.done():
                continue
            if entry.state.done:
                self._note_decode(now - entry.arrived)
                metrics.TOKENS.inc(entry.row.sampling.max_new_tokens)
                try:
                    _settle(entry.future, result=self.stepper.complete(entry.row, entry.state))
                except Exception:
                    log.exception("finishing a request failed")
                    _settle(entry.future, exception=_internal_error())
            else:
                still.append(entry)
        self._running = still
        self.decoding = len(still)
        metrics.DECODING.set(self.decoding)
        self._count(0)

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
        """Stop scheduling; rows still waiting or running get a 503. A running decode is not interrupted."""
        self.draining = True
        in_worker = list(self._in_worker)  # the task's cleanup forgets them when cancelled
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        waiting = [entry for group in self._groups.values() for entry in group]
        for entry in [*in_worker, *self._running, *self._joining, *waiting]:
            _settle(entry.future, exception=ShuttingDown(self.retry_after_s))
        self._groups.clear()
        self._joining.clear()
        self._running = []
        self.decoding = 0
        self._count(-self.waiting)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _internal_error() -> RequestError:
    return RequestError("internal error while decoding (logged on the server)", status=500,
                        code="internal_error", type="server_error")


def _settle(future: asyncio.Future, result=None, exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
