"""Leases between gateway replicas on one database (``GATEWAY_CLUSTER``).

A lease is taken or renewed by one conditional UPDATE (held by me, or expired), or an INSERT
when nobody ever held it; the database decides between replicas racing for it, on SQLite and
PostgreSQL alike. Times are the replicas' clocks (keep them in sync, as for any lease).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db.tables import Lease, utcnow

__all__ = ["hold", "leases", "release"]


def hold(
    engine: Engine, name: str, holder: str, seconds: float, *, healthy: bool, unfinished: int
) -> bool:
    """Take or renew the lease ``name`` for ``seconds``; whether ``holder`` holds it now."""
    now = utcnow()
    values: dict[str, Any] = {
        "holder": holder,
        "expires_at": now + timedelta(seconds=seconds),
        "healthy": healthy,
        "unfinished": unfinished,
    }
    with Session(engine) as session:
        taken = session.execute(
            update(Lease)
            .where(
                col(Lease.name) == name,
                or_(col(Lease.holder) == holder, col(Lease.expires_at) < now),
            )
            .values(values)
        )
        if getattr(taken, "rowcount", 0):
            session.commit()
            return True
        if session.get(Lease, name) is not None:
            return False  # another replica holds it
        session.add(Lease(name=name, **values))
        try:
            session.commit()
        except IntegrityError:  # another replica made it first
            return False
    return True


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease up at once (a replica stopping cleanly)."""
    with Session(engine) as session:
        session.execute(delete(Lease).where(col(Lease.name) == name, col(Lease.holder) == holder))
        session.commit()


def leases(engine: Engine) -> Sequence[Lease]:
    """Every lease, as last written by its holder."""
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(select(Lease)).all()
