"""A version loaded at run time reaches the workers by replacing them, one at a time.

Loading a model is mostly Python holding the interpreter lock (unpickling, a model's `load`):
done in a thread beside a worker's requests, it holds them up, however the thread is
scheduled (`docs/benchmark.md` has the figures). So under Gunicorn a serving worker never loads
a version at run time. When the plan needs one it does not hold, it keeps serving what it has
and says, in its status file, that it waits to be replaced (`_sync.Follower`). The master then:

1. starts one worker more than the pod's count. Forked from the master, it loads the plan before
   it serves, in a thread in Linux's idle class, so it only takes the CPU the serving workers
   leave (`_server._post_worker_init`);
2. once that worker says it serves the plan, retires the waiting one (SIGTERM: its requests
   finish, its kept-alive clients reconnect, and the serving workers hand the newcomer its
   share of theirs, `http/_worker._Rotation`);
3. goes on with the next waiting worker. The worker making the change (`admin load`) goes last:
   its answer waits for the others, then for its own replacement.

A newcomer that cannot load the version marks it failed for the pod, as any process does; the
plan then needs no load, and the waiting workers take it in without being replaced.
"""

from __future__ import annotations

from typing import Any

from ._logs import JsonLog
from ._sync import PlanStore


class Replacements:
    """The master's side: one replacement at a time, for the workers that wait for one."""

    def __init__(self, store: PlanStore, log: JsonLog) -> None:
        self.store = store
        self._log = log
        self._retiring: int | None = None  # the worker being replaced
        self._for = 0  # the plan its replacement must serve
        self._before: set[int] = set()  # the workers when its replacement was asked for
        self._retired: set[int] = set()  # told to stop, not reaped yet

    def step(self, arbiter: Any) -> None:
        """Called from the master's loop, before Gunicorn keeps the worker count: ask for a
        replacement, or retire the worker whose replacement serves."""
        workers = arbiter.WORKERS
        self._retired &= set(workers)
        statuses = self.store.statuses()
        retiring = self._retiring
        if retiring is None:
            waiting = [
                (bool(s.get("changing")), workers[pid].age, pid)
                for pid, s in statuses.items()
                if "replace_for" in s and pid in workers and pid not in self._retired
            ]
            if waiting:
                _, _, pid = min(waiting)  # the calling worker last, then the oldest first
                self._retiring, self._for = pid, int(statuses[pid]["replace_for"])
                self._before = set(workers)
                arbiter.num_workers += 1  # Gunicorn spawns it next
                self._log.event("info", "worker_replacing", pid=pid, generation=self._for)
            return
        if retiring not in workers:  # it died meanwhile: the newcomer takes its place
            arbiter.num_workers -= 1
            self._retiring = None
            return
        newcomers = [pid for pid in workers if pid not in self._before]
        if any(statuses.get(pid, {}).get("generation", -1) >= self._for for pid in newcomers):
            # Gunicorn retires the oldest worker above the count: make it this one.
            workers[retiring].age = min(w.age for w in workers.values()) - 1
            arbiter.num_workers -= 1
            self._retired.add(retiring)
            self._retiring = None
            self._log.event("info", "worker_replaced", pid=retiring, by=newcomers)
