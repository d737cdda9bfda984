"""One InvokeAI backend's share of the run service, and where a new run goes.

Each backend listed in ``INVOKEAI_URL`` gets a *lane*: its own client, its own Socket.IO
connection and follower, its own dispatcher (one enqueue at a time, in order), reconciler
and deadline checks, all working on the stored runs recorded under its name. The lanes share
the database, the event broker and the one way to change a run (``Transitions``).

A run is placed when it is accepted, which is when it is dispatched (the dispatch follows the
claim at once): on a healthy lane (its events followed) with the fewest unfinished runs for
its weight, else the next one when that lane lacks a model or an input image the run names
(``Unplaceable``) or its server refuses the connection (``ServerRefused``). Its uploads go to
the lane that runs it, and it stays there: its outputs, cancel and deadline go to the same
server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import TypeVar

from app.backends.spec import BackendSpec
from app.core.errors import InputInvalid, InvokeAIUnavailable, ServerRefused
from app.db.tables import Lease, utcnow
from app.runs.context import RunContext
from app.runs.deadlines import Deadlines
from app.runs.dispatcher import Dispatcher
from app.runs.follower import Follower
from app.runs.inputs import Unplaceable
from app.runs.reconciler import Reconciler
from app.runs.registry import InFlight

__all__ = ["Lane", "lane_named", "place", "placement_order"]

T = TypeVar("T")


class Lane:
    """One InvokeAI server's follower, dispatcher, reconciler and deadline checks.

    With one gateway process, every lane is *active* from the start. With several replicas on
    one database (``GATEWAY_CLUSTER``), a lane is active only in the replica holding its lease
    (``app.cluster``); elsewhere it only places runs, from what the holder last wrote in the
    lease (``remote``).
    """

    def __init__(self, spec: BackendSpec, ctx: RunContext, *, active: bool = True) -> None:
        self.spec = spec
        self.active = active
        self.remote: Lease | None = None  # the holder's report, while another replica holds it
        self._placing = 0  # runs placed here whose dispatch has not begun yet
        self._build(ctx)

    def _build(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.follower = Follower(ctx)
        self.dispatcher = Dispatcher(ctx, self.follower)
        self.reconciler = Reconciler(ctx, self.follower, self.dispatcher)
        self.deadlines = Deadlines(ctx, self.follower)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def healthy(self) -> bool:
        """Whether this server's events are followed right now (here, or by the replica
        holding its lease, as of its last renewal)."""
        if self.active:
            return self.follower.events_connected
        remote = self.remote
        return remote is not None and remote.healthy and remote.expires_at > utcnow()

    @property
    def known_down(self) -> bool:
        """Whether the replica following this server says it is down, as of a lease still
        running (with no such word, a run may wait for whoever follows it next)."""
        remote = self.remote
        if self.active or remote is None:
            return False
        return not remote.healthy and remote.expires_at > utcnow()

    @property
    def accepts_pending(self) -> bool:
        """Whether a run placed here may be accepted now and sent in the background: its
        events are followed here, or by another replica that has not reported it down (a run
        then waits for whoever follows the server next)."""
        return self.follower.events_connected if self.active else not self.known_down

    def unfinished(self) -> int:
        """Runs of this lane being placed, sent or followed (by its holder, when remote)."""
        if self.active:
            return self._placing + self.ctx.registry.in_flight()
        return self._placing + (self.remote.unfinished if self.remote is not None else 0)

    def load(self) -> float:
        """Unfinished runs per unit of weight: the lane with the least gets the next run."""
        return self.unfinished() / self.spec.weight

    @contextlib.contextmanager
    def placing(self) -> Iterator[None]:
        """Count a run as this lane's while it is checked and claimed (concurrent requests
        then spread instead of all choosing the lane that was idle when they arrived)."""
        self._placing += 1
        try:
            yield
        finally:
            self._placing -= 1

    async def start(self) -> None:
        """Follow this server's unfinished runs, settle its leftover claims, and check its
        deadlines."""
        self.active = True
        await self.follower.start()
        self.follower.spawn(self.reconciler.run_forever())
        self.follower.spawn(self.deadlines.run_forever())

    async def stop(self) -> None:
        """Let dispatches under way finish (briefly), then stop every task."""
        self.active = False
        await self.dispatcher.stop()
        await self.follower.stop()

    async def restart(self) -> None:
        """Start again from what is stored (a lease taken again): fresh collaborators, so
        nothing of an earlier holding lingers."""
        self._build(replace(self.ctx, registry=InFlight()))
        await self.start()


def placement_order(lanes: Sequence[Lane]) -> list[Lane]:
    """Healthy lanes, least loaded first (ties: the order listed); all lanes when none is
    healthy (the first then answers for the outage)."""
    healthy = [lane for lane in lanes if lane.healthy] or list(lanes)
    return sorted(healthy, key=lambda lane: (lane.load(), lanes.index(lane)))


async def place(lanes: Sequence[Lane], attempt: Callable[[Lane], Awaitable[T]]) -> T:
    """Run ``attempt`` on the best lane, or the next when that one lacks a model or an image
    the run names, or its server refused the connection before anything was recorded (a
    server that died since it was last seen healthy, or one no replica has followed yet).

    Raises:
        InputInvalid: no lane has what the run names (each problem says it, naming the
            servers), or any other bad value.
        ServerRefused: every lane tried was refused (a lane lacking something tells less
            than a server that may have had it).
    """
    await _await_events(lanes)
    order = placement_order(lanes)
    missing: Unplaceable | None = None
    refused: ServerRefused | None = None
    for lane in order:
        with lane.placing():
            try:
                return await attempt(lane)
            except Unplaceable as exc:
                missing = exc
            except ServerRefused as exc:
                refused = exc
    if refused is not None:
        raise refused
    assert missing is not None
    if len(lanes) == 1:
        raise missing
    raise _nowhere(missing, [lane.name for lane in order])


async def _await_events(lanes: Sequence[Lane]) -> None:
    for lane in lanes:  # at start only: each waits briefly, once (not for another replica's)
        if lane.active:
            await lane.follower.await_events()


def _nowhere(exc: Unplaceable, names: list[str]) -> InputInvalid:
    where = f" (on none of the InvokeAI servers {', '.join(names)})"
    errors = [problem | {"reason": problem["reason"] + where} for problem in exc.errors or []]
    return InputInvalid(str(exc.detail) + where, errors=errors)


def lane_named(lanes: Sequence[Lane], name: str | None) -> Lane:
    """The lane a stored run belongs to (None: the first one listed).

    Raises:
        InvokeAIUnavailable: the run's server is no longer configured.
    """
    if name is None:
        return lanes[0]
    for lane in lanes:
        if lane.name == name:
            return lane
    raise InvokeAIUnavailable(f"the run ran on InvokeAI server {name!r}, no longer configured")
