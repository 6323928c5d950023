"""Dynamic batching: concurrent requests are collected for a few milliseconds and run as one batch.

A :class:`DynamicBatcher` owns one asyncio queue and one worker thread. ``await submit(item, size)``
enqueues an item; a collector task takes the first waiting item, keeps collecting until
``max_batch`` units (texts, queries) are gathered or ``max_wait_ms`` has passed, then runs
``run_batch(items)`` in the worker thread (the event loop stays free to accept requests; while a
batch runs, the next one fills up). ``run_batch`` returns one result per item, or an exception
instance for an item that failed alone; an exception raised by ``run_batch`` fails the whole batch.
``max_batch=1`` runs every request on its own (no batching), which is the baseline the benchmark
compares against.

Hand-written because the batching libraries for Python model servers (Ray Serve's ``@serve.batch``,
BentoML's adaptive batching) come with their own server and process model; this is the same
collect-then-run loop in ~100 lines on the app's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ShuttingDown(RuntimeError):
    """The batcher stopped (server shutdown) before this item was answered: the caller may retry."""


@dataclass
class _Pending(Generic[T]):
    item: T
    size: int
    future: asyncio.Future[Any]
    enqueued: float


class DynamicBatcher(Generic[T]):
    """Collect items into batches and run them in a dedicated worker thread.

    Args:
        name: label for metrics and the worker thread.
        run_batch: ``run_batch(items) -> results`` (same length; an ``Exception`` instance fails that item).
        max_batch: units per batch (an item larger than this runs alone).
        max_wait_ms: how long the first item of a batch waits for company.
        observe: optional ``observe(name, batch_units, items, queue_wait_s, run_s)`` after each batch.
    """

    def __init__(self, name: str, run_batch: Callable[[list[T]], Sequence[Any]], *, max_batch: int, max_wait_ms: float,
                 observe: Callable[[str, int, int, float, float], None] | None = None) -> None:
        self.name, self.run_batch, self.max_batch, self.max_wait = name, run_batch, max_batch, max_wait_ms / 1000.0
        self.observe = observe
        self._queue: asyncio.Queue[_Pending[T] | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._carry: _Pending[T] | None = None  # an item taken from the queue that did not fit the last batch
        self._running: list[_Pending[T]] = []  # the batch in the worker thread now

    def start(self) -> None:
        """Start the collector on the running event loop (call from the app's startup)."""
        if self._task is not None:
            return
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mrl-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._collect(), name=f"mrl-batcher-{self.name}")

    async def stop(self, timeout: float | None = None) -> None:
        """Finish every queued item, then stop the collector and the worker thread.

        ``timeout``: seconds to wait for that; past it (a batch still running in the worker, e.g. when
        the server's drain window has ended) every item not yet answered fails with
        :class:`ShuttingDown`, and neither the running batch nor the thread is waited for.
        """
        if self._task is None or self._queue is None:
            return
        task, self._task = self._task, None
        await self._queue.put(None)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._fail_waiting(ShuttingDown(f"the server stopped before batch queue {self.name!r} reached this request; retry it."))
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
            return
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _fail_waiting(self, exc: Exception) -> None:
        pending = [self._carry, *self._running]
        self._carry, self._running = None, []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for p in pending:
            if p is not None and not p.future.done():
                p.future.set_exception(exc)

    async def submit(self, item: T, size: int = 1) -> Any:
        """Queue ``item`` (worth ``size`` units) and wait for its result (or its exception)."""
        if self._queue is None or self._task is None:
            raise RuntimeError(f"batcher {self.name} is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, max(int(size), 1), fut, time.perf_counter()))
        return await fut

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        closing = False
        while not closing or self._carry is not None:
            first = self._carry or await self._queue.get()
            self._carry = None
            if first is None:
                closing = True
                continue
            batch, units = [first], first.size
            deadline = loop.time() + self.max_wait
            while units < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), left)
                    except TimeoutError:
                        break
                if nxt is None:
                    closing = True
                    break
                if units + nxt.size > self.max_batch:
                    self._carry = nxt
                    break
                batch.append(nxt)
                units += nxt.size
            await self._run(batch, units)

    async def _run(self, batch: list[_Pending[T]], units: int) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        wait = started - min(p.enqueued for p in batch)
        self._running = batch
        try:
            results = await loop.run_in_executor(self._executor, self.run_batch, [p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch {self.name} returned {len(results)} results for {len(batch)} items")
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the whole batch failed: every caller sees the error (a native panic too: the collector lives on)
            results = [exc if isinstance(exc, Exception) else RuntimeError(f"batch {self.name} failed: {type(exc).__name__}: {exc}")] * len(batch)
        self._running = []  # (left set when the collector is cancelled mid-batch: stop() fails those items)
        if self.observe is not None:
            self.observe(self.name, units, len(batch), wait, time.perf_counter() - started)
        for p, r in zip(batch, results):
            if p.future.done():  # the caller went away (client disconnected)
                continue
            if isinstance(r, BaseException):
                p.future.set_exception(r if isinstance(r, Exception) else RuntimeError(f"{type(r).__name__}: {r}"))
            else:
                p.future.set_result(r)
