"""Timestamps a caller sends, checked to be instants the database can store.

A time with an offset is stored as UTC; ``0001-01-01T06:00+18:58`` lies before year 1 in UTC,
which Python cannot represent (``OverflowError`` deep in the database layer, a 500). Here it is
converted at validation time, so such a value is a 422 naming the parameter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["UTCTimestamp"]


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value  # read as UTC already
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


UTCTimestamp = Annotated[datetime, AfterValidator(_in_utc)]
