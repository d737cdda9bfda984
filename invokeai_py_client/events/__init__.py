"""Socket.IO events of the session queue: typed models and the per-loop event hub."""

from .models import (
    BatchEnqueuedEvent,
    EventsResyncEvent,
    InvocationCompleteEvent,
    InvocationErrorEvent,
    InvocationEvent,
    InvocationProgressEvent,
    InvocationStartedEvent,
    InvokeAIEvent,
    ProgressImage,
    QueueClearedEvent,
    QueueItemEvent,
    QueueItemsCanceledEvent,
    QueueItemsRetriedEvent,
    QueueItemStatusChangedEvent,
    denoising_step,
    parse_event,
)
from .session import EventHub, Subscription, connect_socketio

__all__ = [
    "BatchEnqueuedEvent",
    "EventHub",
    "EventsResyncEvent",
    "InvocationCompleteEvent",
    "InvocationErrorEvent",
    "InvocationEvent",
    "InvocationProgressEvent",
    "InvocationStartedEvent",
    "InvokeAIEvent",
    "ProgressImage",
    "QueueClearedEvent",
    "QueueItemEvent",
    "QueueItemStatusChangedEvent",
    "QueueItemsCanceledEvent",
    "QueueItemsRetriedEvent",
    "Subscription",
    "connect_socketio",
    "denoising_step",
    "parse_event",
]
