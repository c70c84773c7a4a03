"""Shared user states: a user's model state is computed once, where their events arrive, for every replica.

Each replica caches user states (``ModelHandle.user_cache``, keyed by user, last event id and events
read), so a new event makes the user's next request run the Transformer over their history again. Under
a stream of events about half the requests miss that cache, and each read replica repeats the same work
(benchmarks/faults.py, ``writes_*``). With ``ctxrec serve --shared-states``:

* the replica that stores events computes, after the commit and in batches on its model thread, the
  state of each user they touch, keeps it in its own cache and writes it to the store (``user_states``,
  one row per user: model version, catalogue seq, last event id, events read, the state's bytes);
* a replica whose cache misses reads the row and uses it when the key matches exactly; it computes only
  what the store does not have.

So an ingest replica at a lower CPU priority (``--nice``) does the Transformer work that the read
replicas would each repeat (docs/serving.md, "Reads under writes").

A state is derived from the user's events: erasing the user deletes it in the same transaction
(``EventStore.erase_user``), no state is written once the user's last event is gone, and an erased user's
state is never read. It is a cache: a store outage, a queue past its bound or a row that does not match
only means that a replica computes the state itself, as without sharing; each is counted
(``ctxrec_shared_states`` on /metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ctxrec.serving import engine
from ctxrec.serving.store import StoreUnavailable, user_tombstone

if TYPE_CHECKING:
    from ctxrec.serving.engine import ModelHandle
    from ctxrec.serving.settings import ServingSettings
    from ctxrec.serving.store import EventStore

log = logging.getLogger("ctxrec.serving.states")


def compute_states(h: ModelHandle, store: EventStore, users: Sequence[str], max_history: int
                   ) -> list[tuple[str, str, int, int, int, bytes]]:
    """Encode the users' states from their stored events (on the model thread), put them in this
    replica's cache, and return the store rows to write. Erased users and users without stored events
    are skipped."""
    import torch

    users = [u for u in dict.fromkeys(users) if user_tombstone(u) not in h.erased]
    if not users or not h.stateful:
        return []
    now = time.time()
    reqs = [engine.RecRequest(user_id=u, history=None, history_timestamps=None, context={}, timestamp=now, k=1,
                              exclude_seen=False, attributes={}, allow=None, deny=[], text=None, explain=False)
            for u in users]
    with torch.inference_mode():
        qb, keys = engine.build_queries(h, reqs, store, max_history)
        keep = [b for b, k in enumerate(keys) if k is not None and k[1] > 0]
        if not keep:
            return []
        states = engine.user_states(h, qb, keep, keys)  # cached ones are reused; new ones enter the cache
    return [(users[b], h.version, h.item_seq, keys[b][1], keys[b][2], np.ascontiguousarray(v, np.float32).tobytes())
            for b, v in zip(keep, states, strict=True)]


class _Service(Protocol):
    """What the sharer uses of the app's state (app.ServiceState; a Protocol keeps imports one-way)."""

    settings: ServingSettings
    store: EventStore
    handle: ModelHandle
    model_exec: ThreadPoolExecutor


class StateSharer:
    """The background task of one replica that computes and stores the states of users whose events it
    stored. Users wait in an ordered set (one entry per user, however many events); past ``max_pending``
    the oldest are dropped (counted). Nothing here can fail an event request: it only reads the set."""

    def __init__(self, service: _Service, max_pending: int = 10_000) -> None:
        self.service = service
        self.max_pending = max_pending
        self.pending: dict[str, None] = {}
        self.counts = {"written": 0, "dropped": 0, "write_failed": 0}
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._outage = False

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def note(self, users: Iterable[str]) -> None:
        """Users whose events were just committed (called on the event loop)."""
        for u in users:
            self.pending.pop(u, None)
            self.pending[u] = None
        while len(self.pending) > self.max_pending:
            del self.pending[next(iter(self.pending))]
            self.counts["dropped"] += 1
        if self._wake is not None:
            self._wake.set()

    def forget(self, user: str) -> None:
        """An erased user: their pending state is not computed."""
        self.pending.pop(user, None)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                await self._refresh_some()

    async def _refresh_some(self) -> None:
        s = self.service
        users = list(self.pending)[: s.settings.max_batch]
        for u in users:
            del self.pending[u]
        loop = asyncio.get_running_loop()
        try:
            rows = await loop.run_in_executor(s.model_exec, compute_states, s.handle, s.store, users,
                                              s.settings.max_history)
            if rows:  # the commit waits on a pool thread, not on the model thread
                self.counts["written"] += await loop.run_in_executor(None, s.store.put_user_states, rows)
            if self._outage:
                log.warning("shared states: the store answers again")
                self._outage = False
        except StoreUnavailable as exc:
            self.counts["write_failed"] += len(users)
            if not self._outage:  # once per outage; readers compute these states themselves meanwhile
                log.warning("shared states: the store is unavailable (%s); states are computed where they are read", exc)
                self._outage = True
        except Exception:  # a cache must not stop the replica: said, then the next batch
            self.counts["write_failed"] += len(users)
            log.exception("shared states: computing or storing %d users' states failed", len(users))
