"""Predictions off the event loop, and concurrent requests to a model batched into one predict.

A slow `predict` never runs on the event loop: the loop hands the rows to this scheduler and
awaits them, so it goes on answering probes, reading requests and forming the next batch.
A fast one does run on the loop (inline): handing rows to a thread and its answer back costs
more CPU than a predict of a fraction of a millisecond (measured in docs/design.md). So:

- each model version's predicts are measured (time and rows); an unbatched version whose last
  `_MEASURED` predicts all took less than `inline_below` (1 ms by default) is predicted
  inline, measured there too, for a request of no more rows than the most of those had; a
  larger request goes to a thread, and so does every predict for `_MEASURED` predicts after
  one that took longer (a probe waits behind at most that one, however the requests come);
- a predict's time is its thread's CPU time unless it waited of its own (`_cost`): time spent
  waiting for a core (a busy machine) or, on a predict thread, for the interpreter lock (the
  loop holds it while it answers others) says how busy the process is, not how long the model
  takes, and would keep a fast model off the loop on a busy machine, where the hand-off costs
  most. A predict that blocked on the loop (I/O, a lock, a sleep) counts its wall time, and so
  does one whose wall time passed `_WAIT_FACTOR` times the bound anywhere;
- a batched version measured as fast goes inline too when its request is alone: no other
  request for it is arriving (the requests the loop has just read get one turn of the loop to
  say so, unless the server tells that the process answers no other request at all),
  queued or predicting. Requests for it that arrive together are batched on the loop
  as well: they join its queue, and the loop's next turn predicts them as one batch of at
  most twice the rows of the largest predict measured fast (`_batch_here`), so batch sizes
  grow, each measured, up to `max_rows`; a request of more rows goes to a thread;
- every version of a scheduler with more than one thread (set for predicts that wait) goes to
  a thread.

A few predict threads (one per worker process by default) take the rest:

- a request that finds a thread free and no one queued for its model version goes at once, so
  a single request is as fast as it would be without batching;
- a request that arrives while every thread is busy waits in its model version's queue; when a
  thread frees, the queue whose turn it is becomes one `predict` call of at most `max_rows`
  rows (whole requests, oldest first), after waiting at most `max_wait` from the first one's
  arrival for more; each request gets exactly its own rows' outputs, in order;
- a batch whose `predict` raises, or whose output cannot be split by rows, is predicted again
  request by request, so only a bad request fails (and a model whose outputs never split is
  served one request at a time from then on);
- a request whose client left while it waited, or whose deadline passed, is not predicted.

Knows nothing of HTTP; shadows, recording and metrics see requests (see the data plane).
"""

from __future__ import annotations

import asyncio
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ._errors import ClientGone, DeadlineExceeded, PredictFailed
from ._model import ServedModel


@dataclass(frozen=True)
class BatchPolicy:
    """How one model's concurrent requests are batched."""

    max_rows: int = 1  # rows in one predict call; 1: no batching
    max_wait: float = 0.0  # seconds a request may wait for a fuller batch once it could go


UNBATCHED = BatchPolicy()
# How many of a version's latest predicts decide whether it is predicted on the event loop.
_MEASURED = 16
# A predict whose wall time passes this many times the inline bound counts its wall time, however
# little CPU it took: waiting on something it does not say it waits on (on a predict thread, the
# interpreter lock and I/O look alike).
_WAIT_FACTOR = 50
# Past this many versions timed, the timings are forgotten and measured anew (unloaded versions
# would otherwise hold their entries for ever).
_TIMED_AT_MOST = 256


class Observer(Protocol):
    """What the scheduler reports (the runtime's metrics implement it)."""

    def batch(self, model_id: str, version: str, rows: int) -> None:
        """One predict call of `rows` rows."""

    def waited(self, model_id: str, version: str, seconds: float) -> None:
        """A request waited `seconds` between its arrival here and its predict."""

    def waiting(self, model_id: str, change: int) -> None:
        """Requests started (+1) or stopped (-1) waiting in a queue."""

    def abandoned(self, model_id: str, reason: str) -> None:
        """A request was not predicted: `client_gone` or `deadline`."""


class Watch(Protocol):
    """The client's side of a request: tells, once started, when the client leaves."""

    def start(self, on_gone: Callable[[], None]) -> None:
        """Call `on_gone` (on the event loop) if the client leaves."""

    def stop(self) -> None:
        """No need to know any more."""


class _Job:
    __slots__ = (
        "deadline", "future", "inputs", "model", "queued", "queued_at", "rows", "timer", "watch",
    )  # fmt: skip

    def __init__(
        self, model: ServedModel, inputs: Any, rows: int, future: asyncio.Future[Any], now: float
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.rows = rows
        self.future = future
        self.queued_at = now
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.queued = False  # waiting in a queue
        self.watch: Watch | None = None  # the client, watched while the job waits


class _Batch:
    __slots__ = ("cpu", "jobs", "model", "outcomes", "rows", "seconds", "split")

    def __init__(self, model: ServedModel, jobs: list[_Job], split: bool) -> None:
        self.model = model
        self.jobs = jobs
        self.rows = sum(job.rows for job in jobs)
        self.split = split  # predicted as one call (else request by request)
        self.outcomes: list[tuple[bool, Any]] = []  # (raised, output or exception) per job
        self.seconds = 0.0  # how long its predict took, measured on the thread
        self.cpu = 0.0  # the thread's CPU time meanwhile

    @property
    def measures(self) -> bool:
        """Whether its predict tells how long the next will take: one call that succeeded."""
        return self.split or (len(self.jobs) == 1 and not self.outcomes[0][0])

    @property
    def measured_rows(self) -> int:
        return self.rows if self.split else _rows(self.jobs[0].inputs)


class _Queue:
    __slots__ = ("jobs", "model", "policy")

    def __init__(self, model: ServedModel, policy: BatchPolicy) -> None:
        self.model = model
        self.policy = policy
        self.jobs: deque[_Job] = deque()

    def live_head(self) -> _Job | None:
        jobs = self.jobs
        while jobs and jobs[0].future.done():  # answered while it waited (left, expired)
            jobs.popleft()
        return jobs[0] if jobs else None

    def due(self, now: float, limit: int = 0) -> float:
        """When this queue's next batch (of at most `limit` rows, else the policy's) should go
        (the past: at once)."""
        head = self.live_head()
        assert head is not None
        if self.policy.max_wait <= 0.0:
            return head.queued_at
        limit = limit or self.policy.max_rows
        rows = 0
        for job in self.jobs:
            if not job.future.done():
                rows += job.rows
                if rows >= limit:
                    return head.queued_at
        return head.queued_at + self.policy.max_wait


class _Silent:
    def batch(self, model_id: str, version: str, rows: int) -> None:
        pass

    def waited(self, model_id: str, version: str, seconds: float) -> None:
        pass

    def waiting(self, model_id: str, change: int) -> None:
        pass

    def abandoned(self, model_id: str, reason: str) -> None:
        pass


if sys.platform == "linux":
    from resource import RUSAGE_THREAD, getrusage

    def _blocks() -> int:
        """How many times the calling thread has waited of its own so far (Linux counts a
        voluntary context switch each time a thread blocks: I/O, a lock, a sleep)."""
        return getrusage(RUSAGE_THREAD).ru_nvcsw

else:  # not counted: every predict on the loop counts its wall time, as if it blocked

    def _blocks() -> int:
        return -1


def _cost(wall: float, cpu: float, blocked: bool, bound: float) -> float:
    """What one predict tells of the next (seconds): its CPU time, unless it blocked or its
    wall time passed `_WAIT_FACTOR` times `bound`, then its wall time."""
    return wall if blocked or wall > bound * _WAIT_FACTOR else cpu


class _Stopwatch:
    """What a predict on the loop cost, by `_cost`: started when made."""

    __slots__ = ("blocks", "cpu", "started")

    def __init__(self) -> None:
        self.blocks, self.cpu, self.started = _blocks(), time.thread_time(), time.perf_counter()

    def cost(self, bound: float) -> float:
        wall, cpu = time.perf_counter() - self.started, time.thread_time() - self.cpu
        blocked = self.blocks < 0 or _blocks() != self.blocks
        return _cost(wall, cpu, blocked, bound)


class _Timing:
    """A model version's latest predicts that succeeded: their rows and seconds (two deques,
    so that the question asked on every request is two `max` calls in C)."""

    __slots__ = ("rows", "seconds")

    def __init__(self) -> None:
        self.rows: deque[int] = deque(maxlen=_MEASURED)
        self.seconds: deque[float] = deque(maxlen=_MEASURED)

    def add(self, rows: int, seconds: float) -> None:
        self.rows.append(rows)
        self.seconds.append(seconds)

    def inline(self, rows: int, below: float) -> bool:
        """Whether a predict of `rows` rows may run on the loop: every latest one was faster
        than `below`, and one at least had as many rows."""
        return rows <= self.inline_rows(below)

    def inline_rows(self, below: float) -> int:
        """The most rows a predict may have to run on the loop (0: none may)."""
        seconds = self.seconds
        if len(seconds) < _MEASURED or max(seconds) >= below:
            return 0
        return max(self.rows)


class Scheduler:
    """Runs predicts on `threads` threads of the current process (or inline when fast),
    batching where allowed."""

    def __init__(
        self,
        threads: int = 1,
        policies: Mapping[str, BatchPolicy] | None = None,
        observer: Observer | None = None,
        inline_below: float = 0.001,
    ) -> None:
        self.threads = max(1, threads)
        self.policies = dict(policies or {})
        self.observer: Observer = observer or _Silent()
        # Seconds: an unbatched version whose average predict takes less runs on the event
        # loop; 0: never.
        self.inline_below = inline_below
        # How many requests this process is answering now, its own among them, when its
        # server can tell (set by the HTTP worker): with none other, a request is alone
        # without a turn of the loop to find out (`_alone`).
        self.in_flight: Callable[[], int] | None = None
        self._pid = 0  # the process whose threads, loop and queues these are

    def _start(self) -> None:
        # After fork: the threads and queues of the master (if any) are not this process's.
        self._pid = os.getpid()
        self._loop = asyncio.get_running_loop()
        self._work: queue.SimpleQueue[_Batch] = queue.SimpleQueue()
        self._queues: dict[int, _Queue] = {}
        self._busy = 0
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        self._running_since = [0.0] * self.threads  # per thread: when its batch began
        self._unsplittable: set[int] = set()  # models whose outputs did not split by rows
        self._timings: dict[tuple[str, str, int], _Timing] = {}  # per version: predicts
        self._arriving: dict[int, int] = {}  # per batched version: requests deciding
        self._gathering: set[int] = set()  # batched versions whose next batch runs on the loop
        self._gather_timers: dict[int, asyncio.TimerHandle] = {}  # ...once it is due
        for index in range(self.threads):
            thread = threading.Thread(
                target=self._serve, args=(index,), name=f"lls-predict-{index}", daemon=True
            )
            thread.start()

    def start(self) -> None:
        """Start this process's predict threads (else done on the first predict)."""
        if self._pid != os.getpid():
            self._start()

    def stuck_for(self) -> float:
        """Seconds the longest-running predict of this process has been running (0: none)."""
        if self._pid != os.getpid():
            return 0.0
        began = [t for t in self._running_since if t]
        return time.monotonic() - min(began) if began else 0.0

    async def predict(
        self,
        model: ServedModel,
        inputs: Any,
        *,
        deadline: float | None = None,
        watch: Watch | None = None,
    ) -> Any:
        """The output of the model's predict on `inputs` (a list of rows when it has features).

        `deadline` is in `time.monotonic()`'s clock. Raises PredictFailed when predict
        raised, DeadlineExceeded when the deadline passed first, ClientGone when the client
        left before its rows were predicted.
        """
        if self._pid != os.getpid():
            self._start()
        loop = self._loop
        policy = self._policy(model)
        now = time.monotonic()
        here = False  # batched on the loop
        if self._inline(model, inputs):
            if policy.max_rows == 1:
                return self._predict_inline(model, inputs, deadline, now)
            if await self._alone(model):
                return self._predict_inline(model, inputs, deadline, time.monotonic())
            now = time.monotonic()
            here = True
        rows = len(inputs) if policy.max_rows > 1 else 1
        job = _Job(model, inputs, rows, loop.create_future(), now)
        if deadline is not None:
            job.deadline = deadline
            job.timer = loop.call_later(deadline - now, self._expire, job)
        key = id(model)
        waiting = self._queues.get(key)
        if here:
            # On the loop, a request waits one turn, unless its batch waits for more rows.
            self._enqueue(job, policy, watch if policy.max_wait > 0.0 else None)
            if key not in self._gathering:
                self._gathering.add(key)
                loop.call_soon(self._batch_here, key)
        elif self._busy < self.threads and (waiting is None or waiting.live_head() is None):
            self._dispatch(_Batch(model, [job], split=False), now)  # waited: not at all
        else:
            self._enqueue(job, policy, watch)
            self._next()
        return await job.future

    def _enqueue(self, job: _Job, policy: BatchPolicy, watch: Watch | None) -> None:
        """Put `job` in its version's queue; with `watch`, a client that leaves meanwhile
        abandons it."""
        model = job.model
        waiting = self._queues.get(id(model))
        if waiting is None:
            waiting = self._queues[id(model)] = _Queue(model, policy)
        waiting.jobs.append(job)
        job.queued = True
        self.observer.waiting(model.model_id, 1)
        if watch is not None:
            job.watch = watch
            watch.start(lambda: self._abandon(job, "client_gone"))

    def _inline(self, model: ServedModel, inputs: Any) -> bool:
        """Whether `model` is fast enough to predict `inputs` on the event loop."""
        if self.threads > 1 or not self.inline_below:
            return False
        timing = self._timings.get(_version_of(model))
        return timing is not None and timing.inline(_rows(inputs), self.inline_below)

    async def _alone(self, model: ServedModel) -> bool:
        """Whether a request for batched `model` is the only one: none other arriving (the
        requests read in the same turn of the loop reach here in the next), waiting or being
        predicted."""
        key = id(model)
        in_flight = self.in_flight
        if in_flight is not None and in_flight() <= 1:
            # No other request in the process: none read with it, none to wait for. (A
            # request read in the same turn has its task already, though it has not run.)
            others = 0
        else:
            arriving = self._arriving
            arriving[key] = arriving.get(key, 0) + 1
            try:
                await asyncio.sleep(0)
                others = arriving[key] - 1
            finally:
                arriving[key] -= 1
                if not arriving[key]:
                    del arriving[key]
        waiting = self._queues.get(key)
        return not others and not self._busy and (waiting is None or waiting.live_head() is None)

    def _predict_inline(
        self, model: ServedModel, inputs: Any, deadline: float | None, now: float
    ) -> Any:
        if deadline is not None and deadline <= now:
            self.observer.abandoned(model.model_id, "deadline")
            raise DeadlineExceeded("not predicted: the request's deadline had passed")
        self.observer.waited(model.model_id, model.version, 0.0)
        clock = _Stopwatch()
        raised, value = _predict_one(model, inputs)
        if not raised:
            self._timed(model, inputs, clock.cost(self.inline_below))
        self.observer.batch(model.model_id, model.version, 1)
        if raised:
            raise value
        return value

    def _timed(self, model: ServedModel, inputs: Any, seconds: float) -> None:
        """Measured: a predict of `inputs` that succeeded (one that raised says nothing of
        what the next may take)."""
        self._timed_rows(model, _rows(inputs), seconds)

    def _timed_rows(self, model: ServedModel, rows: int, seconds: float) -> None:
        timings = self._timings
        key = _version_of(model)
        timing = timings.get(key)
        if timing is None:
            if len(timings) >= _TIMED_AT_MOST:
                timings.clear()
            timing = timings[key] = _Timing()
        timing.add(rows, seconds)

    def _policy(self, model: ServedModel) -> BatchPolicy:
        policy = self.policies.get(model.model_id, UNBATCHED)
        if model.spec is None or id(model.instance) in self._unsplittable:
            return UNBATCHED  # rows are only known for models that declare their features
        return policy

    # on the event loop

    def _expire(self, job: _Job) -> None:
        job.timer = None
        if job.future.done():
            return
        if job.queued:  # never predicted
            self._abandon(job, "deadline")
            return
        job.future.set_exception(
            DeadlineExceeded("the request's deadline passed while its model predicted")
        )

    def _abandon(self, job: _Job, reason: str) -> None:
        if job.future.done():
            return
        self.observer.abandoned(job.model.model_id, reason)
        if reason == "deadline":
            error: Exception = DeadlineExceeded(
                "not predicted: the request's deadline passed while it waited for its turn"
            )
        else:
            error = ClientGone("not predicted: the client left while the request waited")
        job.future.set_exception(error)
        self._release(job)

    def _release(self, job: _Job) -> None:
        if job.queued:
            job.queued = False
            self.observer.waiting(job.model.model_id, -1)
        if job.watch is not None:
            job.watch.stop()
            job.watch = None
        if job.timer is not None and job.future.done():
            job.timer.cancel()
            job.timer = None

    def _next(self) -> None:
        """Start batches while threads are free and a queue's turn has come."""
        while self._busy < self.threads:
            now = time.monotonic()
            chosen, due = None, 0.0
            for key, waiting in list(self._queues.items()):
                if waiting.live_head() is None:
                    del self._queues[key]
                    continue
                at = waiting.due(now)
                if chosen is None or at < due:
                    chosen, due = waiting, at
            if chosen is None:
                return
            if due > now:  # waiting for a fuller batch
                if self._wake is None or due < self._wake_at:
                    if self._wake is not None:
                        self._wake.cancel()
                    self._wake_at = due
                    self._wake = self._loop.call_later(due - now, self._woken)
                return
            self._dispatch(self._take(chosen, now), now)

    def _batch_here(self, key: int) -> None:
        """Predict on the loop the next batch of a fast version's requests that arrived
        together (those the loop read meanwhile join the one after)."""
        self._gathering.discard(key)
        timer = self._gather_timers.pop(key, None)
        if timer is not None:  # looked at sooner: a request joined the waiting batch
            timer.cancel()
        waiting = self._queues.get(key)
        head = waiting.live_head() if waiting is not None else None
        if waiting is None or head is None:
            return
        timing = self._timings.get(_version_of(waiting.model))
        measured = timing.inline_rows(self.inline_below) if timing is not None else 0
        # Up to twice the rows measured fast: batches grow, measured, to max_rows.
        limit = min(waiting.policy.max_rows, 2 * measured)
        if head.rows > limit:  # no longer measured fast, or larger than any: a thread's
            self._next()
            return
        now = time.monotonic()
        due = waiting.due(now, limit)
        if due > now:  # waiting for a fuller batch (each request that joins looks again)
            self._gather_timers[key] = self._loop.call_later(due - now, self._batch_here, key)
            return
        batch = self._take(waiting, now, limit)
        if waiting.live_head() is not None:
            self._gathering.add(key)
            self._loop.call_soon(self._batch_here, key)
        if not batch.jobs:
            return
        self._waited(batch, now)
        clock = _Stopwatch()
        self._run(batch)
        if batch.measures:
            self._timed_rows(batch.model, batch.measured_rows, clock.cost(self.inline_below))
        self._answer(batch)

    def _woken(self) -> None:
        self._wake = None
        self._next()

    def _take(self, waiting: _Queue, now: float, limit: int = 0) -> _Batch:
        jobs: list[_Job] = []
        rows = 0
        limit = limit or waiting.policy.max_rows
        while waiting.jobs:
            job = waiting.jobs[0]
            if job.future.done():
                waiting.jobs.popleft()
                continue
            if jobs and rows + job.rows > limit:
                break
            waiting.jobs.popleft()
            if job.deadline is not None and job.deadline <= now:
                self._abandon(job, "deadline")  # its timer has not run yet
                continue
            self._release(job)
            jobs.append(job)
            rows += job.rows
        return _Batch(waiting.model, jobs, split=len(jobs) > 1)

    def _dispatch(self, batch: _Batch, now: float) -> None:
        """Hand the batch to a predict thread; `now` is when its jobs stopped waiting."""
        if not batch.jobs:
            return
        self._waited(batch, now)
        self._busy += 1
        self._work.put(batch)

    def _waited(self, batch: _Batch, now: float) -> None:
        """Count how long each of the batch's requests waited, until `now`."""
        model = batch.model
        for job in batch.jobs:
            self.observer.waited(model.model_id, model.version, now - job.queued_at)

    def _done(self, batch: _Batch) -> None:
        self._busy -= 1
        if batch.measures:
            # What it would cost inline: a thread's waits for the interpreter lock and for I/O
            # look alike, so its CPU time (up to the bound's `_WAIT_FACTOR`).
            cost = _cost(batch.seconds, batch.cpu, False, self.inline_below)
            self._timed_rows(batch.model, batch.measured_rows, cost)
        self._answer(batch)
        self._next()

    def _answer(self, batch: _Batch) -> None:
        """Count the batch, and give each of its requests its outcome."""
        model = batch.model
        if batch.split:
            self.observer.batch(model.model_id, model.version, batch.rows)
        else:
            for job in batch.jobs:
                self.observer.batch(model.model_id, model.version, job.rows)
        for job, (raised, value) in zip(batch.jobs, batch.outcomes, strict=True):
            if not job.future.done():
                if raised:
                    job.future.set_exception(value)
                else:
                    job.future.set_result(value)
            self._release(job)

    # on a predict thread

    def _serve(self, index: int) -> None:
        running = self._running_since
        while True:
            batch = self._work.get()
            running[index] = began = time.monotonic()
            cpu = time.thread_time()
            self._run(batch)
            running[index] = 0.0
            batch.seconds = time.monotonic() - began
            batch.cpu = time.thread_time() - cpu
            try:
                self._loop.call_soon_threadsafe(self._done, batch)
            except RuntimeError:  # the loop closed: the process is exiting
                return

    def _run(self, batch: _Batch) -> None:
        """Predict the batch (on a thread or on the loop): every request gets an outcome."""
        try:
            self._predict_batch(batch)
        except BaseException as exc:  # never lose a batch's clients, whatever happened
            batch.outcomes = [(True, exc)] * len(batch.jobs)

    def _predict_batch(self, batch: _Batch) -> None:
        if batch.split:
            inputs = [row for job in batch.jobs for row in job.inputs]
            try:
                output = batch.model.run(inputs)
            except Exception:
                output = None  # retried request by request below: only a bad one fails
            else:
                parts = _split(output, [job.rows for job in batch.jobs])
                if parts is not None:
                    batch.outcomes = [(False, part) for part in parts]
                    return
                # Not one output per row: this model is served a request at a time from now.
                self._unsplittable.add(id(batch.model.instance))
            batch.split = False
        batch.outcomes = [_predict_one(batch.model, job.inputs) for job in batch.jobs]


def _version_of(model: ServedModel) -> tuple[str, str, int]:
    # The instance too: a version unloaded and loaded again is measured anew.
    return model.model_id, model.version, id(model.instance)


def _rows(inputs: Any) -> int:
    """Rows of a predict's inputs: a list's length (rows of features), else one."""
    return len(inputs) if isinstance(inputs, list) else 1


def _predict_one(model: ServedModel, inputs: Any) -> tuple[bool, Any]:
    try:
        return False, model.run(inputs)
    except Exception as exc:
        failed = PredictFailed(
            f"model {model.model_id!r} version {model.version!r} failed to predict: "
            f"{type(exc).__name__}"
        )
        failed.__cause__ = exc
        return True, failed


def _split(output: Any, sizes: list[int]) -> list[Any] | None:
    """`output` cut into consecutive parts of `sizes` rows, or None if it is not row-wise."""
    if not (isinstance(output, (list, tuple)) or len(getattr(output, "shape", ())) >= 1):
        return None
    if len(output) != sum(sizes):
        return None
    parts, start = [], 0
    for size in sizes:
        parts.append(output[start : start + size])
        start += size
    return parts
