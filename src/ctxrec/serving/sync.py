"""Several replicas, one service: each replica polls the shared store and catches up with changes
that another replica made (docs/serving.md, "Several replicas").

Events need nothing: a recommend request reads the user's events from the store, and the user-state
cache is keyed by (user, last event id, events read), so another replica's event changes the key.
What a replica keeps in memory is followed here, from one cheap query every ``sync_interval``
seconds (:meth:`EventStore.change_versions`):

* the catalogue: item adds and retirements carry an increasing ``seq``; a higher one than the handle's
  is applied on the model thread, exactly as the replica that took the request did;
* erased users: a changed count reloads the tombstones (and drops their cached state);
* the promoted model: ``POST /v1/admin/model`` on any replica records (run folder, version, seq) in the
  store; every other replica loads that folder (the run folders live on storage all replicas share)
  and swaps to it between two batches, as the swap route does, so no request fails.

A poll that meets a store outage is skipped (the next one retries); a promoted folder that fails to
load is logged once and reported by ``/readyz`` as ``sync_error`` while the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from ctxrec.serving import engine
from ctxrec.serving.settings import ServingSettings
from ctxrec.serving.store import EventStore, StoreUnavailable, user_tombstone

log = logging.getLogger("ctxrec.serving.sync")


class ServiceState(Protocol):
    """What the poller uses of the app's state (app.ServiceState; a Protocol keeps imports one-way)."""

    settings: ServingSettings
    store: EventStore
    handle: engine.ModelHandle
    model_seq: int
    swap_lock: asyncio.Lock
    model_exec: ThreadPoolExecutor


class ReplicaSync:
    """The poller of one replica (an asyncio task started by the app's lifespan)."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.erased_count = -1
        self.failed_seq = 0
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.state.settings.sync_interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.state.settings.sync_interval)
            try:
                await self.step()
            except StoreUnavailable:
                continue  # an outage: the next poll retries (requests get 503 meanwhile)
            except Exception:  # a poller that dies would silently split the service
                log.exception("replica sync failed; retrying at the next poll")

    async def step(self) -> None:
        """One poll: catch up with the promoted model, then the catalogue and the erased users."""
        st = self.state
        loop = asyncio.get_running_loop()
        items_seq, erased_count, model_seq = await loop.run_in_executor(None, st.store.change_versions)
        if model_seq > st.model_seq and model_seq != self.failed_seq:
            await self.follow_model()
        if items_seq > st.handle.item_seq:
            await loop.run_in_executor(st.model_exec, engine.apply_store_items, st.handle, st.store)
        if erased_count != self.erased_count:
            erased = await loop.run_in_executor(None, st.store.erased_users)
            await loop.run_in_executor(st.model_exec, _set_erased, st.handle, erased)
            self.erased_count = erased_count

    async def follow_model(self) -> None:
        st = self.state
        loop = asyncio.get_running_loop()
        async with st.swap_lock:
            rec = await loop.run_in_executor(None, st.store.promoted)
            if rec is None or rec[0] <= st.model_seq:
                return  # this replica made the swap itself, or one landed meanwhile
            seq, run_dir, version = rec
            resolved = await loop.run_in_executor(None, Path(run_dir).resolve)
            if version == st.handle.version and resolved == st.handle.path:
                st.model_seq = seq
                return
            try:
                new = await loop.run_in_executor(None, engine.load_handle, Path(run_dir), st.settings, st.store)
            except Exception as exc:  # noqa: BLE001 - keep serving the old version, say why
                self.failed_seq = seq
                self.error = f"could not load the promoted model {run_dir!r} (version {version}): {exc}"
                log.error("replica sync: %s", self.error)
                return

            def _swap() -> None:
                engine.apply_store_items(new, st.store)  # items changed while it loaded
                st.handle = new

            await loop.run_in_executor(st.model_exec, _swap)
            st.model_seq, self.error = seq, None
            log.info("replica sync: now serving the promoted model %s from %s", new.version, new.path)


def _set_erased(h: engine.ModelHandle, erased: set[str]) -> None:
    new = erased - h.erased
    h.erased = set(erased)
    if new:
        for key in [k for k in h.user_cache if user_tombstone(k[0]) in new]:
            del h.user_cache[key]
