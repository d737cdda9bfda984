"""InvokeAI's multi-user mode: status, first-admin setup and login.

With ``multiuser: true`` in ``invokeai.yaml`` every route but ``/auth/status``,
``/auth/setup`` and ``/auth/login`` wants ``Authorization: Bearer <token>`` (401 without).
The token is a JWT from ``POST /auth/login``, valid one day (seven with ``remember_me``);
the server may send a renewed one in ``X-Refreshed-Token``, which ``HttpCore`` adopts.
The Socket.IO handshake takes the same token as its ``auth`` payload ``{"token": ...}``
(or an ``Authorization`` header); without it a multi-user server refuses the connection.
Source: ``app/api/routers/auth.py``, ``app/api/auth_dependencies.py``, ``app/api/sockets.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._http import HttpCore

__all__ = ["auth_status", "login", "setup_admin", "socketio_auth"]


async def auth_status(http: HttpCore) -> dict[str, Any]:
    """Whether the server runs in multi-user mode and still needs its first admin.

    Returns:
        The server's answer: ``multiuser_enabled``, ``setup_required``,
        ``strict_password_checking`` and ``admin_email`` (only while setup is required).
    """
    body = await http.get_json("/auth/status")
    return dict(body)


async def login(http: HttpCore, username: str, password: str, *, remember_me: bool = False) -> str:
    """Log in and return the bearer token (the caller decides where to keep it).

    Args:
        http: the client's HTTP shell.
        username: the account's e-mail address (InvokeAI logs users in by e-mail).
        password: the account's password.
        remember_me: ask for a seven-day token instead of a one-day one.

    Raises:
        AuthenticationError: wrong e-mail or password (401).
        PermissionDeniedError: the account is disabled, or the server is not in
            multi-user mode (403).
    """
    body = await http.post_json(
        "/auth/login",
        json_body={"email": username, "password": password, "remember_me": remember_me},
        retry=True,  # logging in twice is harmless, so a dropped connection may retry
    )
    return str(body["token"])


async def setup_admin(
    http: HttpCore, email: str, password: str, display_name: str | None = None
) -> dict[str, Any]:
    """Create the first administrator of a fresh multi-user server.

    Returns:
        The created user (``user_id``, ``email``, ``is_admin``, ...).

    Raises:
        BadRequestError: an administrator exists already, or the password is too weak.
        PermissionDeniedError: the server is not in multi-user mode.
    """
    body = await http.post_json(
        "/auth/setup",
        json_body={"email": email, "password": password, "display_name": display_name},
    )
    return dict(body["user"])


def socketio_auth(token: str | None) -> dict[str, str] | None:
    """The Socket.IO ``auth`` payload that carries a token (None without one)."""
    return {"token": token} if token else None
