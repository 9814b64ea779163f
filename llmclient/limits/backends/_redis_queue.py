"""The fleet's line for one endpoint's slots, as this event loop takes part in it: its waiters
and held leases, the `SLOTS` call that enters, renews and releases them, and the grants that
come back in its reply or on this process's pub/sub channel."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import TYPE_CHECKING, Any

from redis.typing import EncodableT

from llmclient.limits.backends._redis_conn import DOWN, Batch, Call, reraise_cancel

if TYPE_CHECKING:
    from llmclient.errors import LimitsUnavailableError
    from llmclient.limits.backends._redis_space import Space

__all__ = ["Queue"]


class Queue:
    """This loop's waiters (holder -> limit, grant) and held slots in the fleet's line."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self._numbers = itertools.count()
        self.held: set[str] = set()
        self.waiters: dict[str, tuple[int, asyncio.Future[None]]] = {}  # holder -> limit, grant
        self.fleet_held = 0  # slots held by the whole fleet, as last read
        self._enters: dict[str, int] = {}  # waiters not yet sent, with their limits
        self._releases: list[str] = []
        self._sync_due = False  # send every waiter again (a safety net for lost grants)
        self._renew_due = False

    def holder(self) -> str:
        """A new holder id, unique in the fleet."""
        return f"{self.space.me}:{next(self._numbers)}"

    async def acquire(self, holder: str, limit: int) -> None:
        """Stand in the fleet's line as `holder` until granted a slot."""
        self.space.running()
        grant = asyncio.get_running_loop().create_future()
        self.waiters[holder] = (limit, grant)
        self._enters[holder] = limit
        self.space.pipe.kick.set()
        try:
            await grant
        finally:
            self.waiters.pop(holder, None)
            self._enters.pop(holder, None)

    def relimit(self, limit: int) -> None:
        """Ask for at most `limit` slots for the waiters of this loop from now on."""
        for holder, (_, grant) in list(self.waiters.items()):
            self.waiters[holder] = (limit, grant)
            if holder in self._enters:
                self._enters[holder] = limit
        if self.waiters:
            self.resend()

    def release(self, holder: str) -> None:
        """Give `holder`'s slot (or its place in line) back, in the next batch."""
        self.space.running()
        self.held.discard(holder)
        self._enters.pop(holder, None)
        self._releases.append(holder)
        self.space.pipe.kick.set()

    def sync(self) -> None:
        """Send every waiter of this loop again: picks up grants whose message was lost and
        slots whose lease ran out, and puts waiters back in line after a Redis restart."""
        if self.waiters:
            self.resend()

    def resend(self) -> None:
        """Make a `SLOTS` call with every waiter in the next batch, even with none: it grants
        what a higher limit frees, to whoever is first in line."""
        self._sync_due = True
        self.space.pipe.kick.set()

    def granted(self, holders: list[Any], held: int) -> None:
        """Wake the `holders` granted a slot; `held` is the fleet's count."""
        self.fleet_held = held
        for raw in holders:
            holder = raw.decode() if isinstance(raw, bytes) else str(raw)
            _, grant = self.waiters.pop(holder, (0, None))
            if grant is not None and not grant.done():
                self.held.add(holder)
                grant.set_result(None)

    def fail(self, failure: LimitsUnavailableError) -> None:
        """End every wait of this loop with `failure`."""
        for _, grant in self.waiters.values():
            if not grant.done():
                grant.set_exception(failure)

    def take(self, batch: Batch) -> Call | None:
        """Move what is pending into `batch`; the `SLOTS` call for it, if there is work."""
        space = self.space
        batch.releases, self._releases = self._releases, []
        batch.enters, self._enters = self._enters, {}
        batch.sync, batch.renew = self._sync_due, self._renew_due
        self._sync_due = self._renew_due = False
        if batch.sync:
            batch.enters = {holder: limit for holder, (limit, _) in self.waiters.items()}
        renewals = list(self.held) if batch.renew else []
        if not (batch.releases or batch.enters or renewals or batch.sync):
            return None
        args: list[EncodableT] = [space.me, space.grants, space.lease_ms, space.idle_ms]
        args += [len(batch.releases), *batch.releases, len(renewals), *renewals]
        for holder, limit in batch.enters.items():
            args += [holder, limit]
        return ("SLOTS", space.slot_keys, args)

    def requeue(self, batch: Batch) -> None:
        """Put `batch`'s releases, renewals and entries back (all three are idempotent)."""
        self._releases[:0] = batch.releases
        for holder, limit in batch.enters.items():
            if holder in self.waiters:
                self._enters.setdefault(holder, limit)
        self._sync_due |= batch.sync
        self._renew_due |= batch.renew

    async def heartbeat(self) -> None:
        """Renew held leases and re-send waiters every `recheck` seconds (< lease / 3)."""
        space = self.space
        while not space.closed.is_set():
            await space.nap(space.recheck)
            if self.held:
                self._renew_due = True
                space.pipe.kick.set()
            self.sync()

    async def listen(self) -> None:
        """Take the grants other processes' calls send to this process's channel."""
        space = self.space
        pubsub = space.redis.pubsub()
        try:
            while not space.closed.is_set():
                try:
                    if not pubsub.subscribed:
                        await pubsub.subscribe(space.channel)
                    message = await pubsub.get_message(timeout=space.recheck)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.sync()  # grants sent before we listened
                    elif message["type"] == "message":
                        held, pause_ms, *holders = message["data"].split()
                        space.saw_pause(int(pause_ms))
                        self.granted(holders, int(held))
                except DOWN as error:
                    reraise_cancel(error)
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                    await space.nap(space.recheck)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
