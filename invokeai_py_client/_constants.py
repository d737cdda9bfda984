"""Defaults, in one place so the docs and the code cannot disagree."""

from __future__ import annotations

DEFAULT_PORT = 9090
DEFAULT_BASE_PATH = "/api/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 2
DEFAULT_QUEUE_ID = "default"

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0

SOCKETIO_PATH = "/ws/socket.io"
