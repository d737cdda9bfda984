"""InvokeAI's multi-user mode, on a server of its own started with ``multiuser: true``.

What the server needs (InvokeAI 6.14.2, ``routers/auth.py``, ``auth_dependencies.py``,
``sockets.py``): ``POST /api/v1/auth/setup`` once to create the first admin, then
``POST /api/v1/auth/login`` with ``{"email", "password"}`` for a JWT; every other HTTP route
wants ``Authorization: Bearer <jwt>`` (401 without), and the Socket.IO handshake wants the
same JWT as its ``auth`` payload ``{"token": <jwt>}`` (refused without).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import socketio

from invokeai_py_client import (
    AuthenticationError,
    BadRequestError,
    InvokeAIClient,
    PermissionDeniedError,
)
from invokeai_py_client._constants import SOCKETIO_PATH
from invokeai_py_client.auth import auth_status, login, setup_admin
from tests.integration.test_boards import png_bytes
from tests.support import invokeai_server

pytestmark = pytest.mark.invokeai

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "Correct-Horse-42"


@pytest.fixture(scope="module")
def multiuser_url() -> Iterator[str]:
    """A fresh multi-user server (always started here: the shared one is single-user)."""
    server = invokeai_server.start(extra_config="multiuser: true\n")
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="module")
def admin_ready(multiuser_url: str) -> dict[str, object]:
    """Create the first admin through the setup route; returns the status seen before."""
    with InvokeAIClient.from_url(multiuser_url) as anonymous:
        before = anonymous._portal.call(auth_status(anonymous._http))
        anonymous._portal.call(setup_admin(anonymous._http, ADMIN_EMAIL, ADMIN_PASSWORD))
    return before


@pytest.fixture
async def admin_client(multiuser_url: str, admin_ready: object) -> AsyncIterator[InvokeAIClient]:
    client = InvokeAIClient.from_url(multiuser_url, username=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    await client.alogin()
    try:
        yield client
    finally:
        await client.aclose()


def test_status_and_setup(multiuser_url: str, admin_ready: dict[str, object]) -> None:
    assert admin_ready["multiuser_enabled"] is True
    assert admin_ready["setup_required"] is True
    with InvokeAIClient.from_url(multiuser_url) as anonymous:
        after = anonymous._portal.call(auth_status(anonymous._http))
        assert after["multiuser_enabled"] is True and after["setup_required"] is False
        with pytest.raises(BadRequestError):  # the first admin exists now
            anonymous._portal.call(setup_admin(anonymous._http, "b@example.com", "Another-Pass-1"))


def test_sync_login_then_authenticated_calls(multiuser_url: str, admin_ready: object) -> None:
    with InvokeAIClient.from_url(
        multiuser_url, username=ADMIN_EMAIL, password=ADMIN_PASSWORD
    ) as client:
        client.login()
        assert client._http.token
        board = client.board_repo.create_board("admin's board")
        handle = client.board_repo.get_board_handle(board.board_id)
        image = handle.upload_image_data(png_bytes(30, 20))
        # The image routes accept the bearer header too (browsers use a cookie instead).
        assert handle.download_image(image.image_name).startswith(b"\x89PNG")
        assert client.board_repo.list_boards()[0].board_id == board.board_id
        assert client.dnn_model_repo.list_models() == []
        client.board_repo.delete_board(board.board_id, delete_images=True)


def test_unauthenticated_calls_are_refused(multiuser_url: str, admin_ready: object) -> None:
    with InvokeAIClient.from_url(multiuser_url) as anonymous:
        with pytest.raises(AuthenticationError) as info:
            anonymous.board_repo.list_boards()
        assert info.value.status_code == 401
        with pytest.raises(AuthenticationError):
            anonymous.dnn_model_repo.list_models()
        # The version route stays open, so health checks work without logging in.
        assert anonymous.health_check() is True


def test_a_bad_token_is_refused(multiuser_url: str, admin_ready: object) -> None:
    with (
        InvokeAIClient.from_url(multiuser_url, api_key="not-a-jwt") as client,
        pytest.raises(AuthenticationError),
    ):
        client.board_repo.list_boards()


def test_wrong_password_is_refused(multiuser_url: str, admin_ready: object) -> None:
    with InvokeAIClient.from_url(multiuser_url, username=ADMIN_EMAIL, password="wrong") as client:
        with pytest.raises(AuthenticationError) as info:
            client.login()
        assert "Incorrect email or password" in str(info.value)
        assert client._http.token is None


async def test_login_function_returns_a_token(admin_client: InvokeAIClient) -> None:
    token = await login(admin_client._http, ADMIN_EMAIL, ADMIN_PASSWORD, remember_me=True)
    assert token.count(".") == 2  # a JWT
    assert admin_client._http.token is not None


def test_login_on_a_single_user_server_is_refused(invokeai_url: str) -> None:
    with InvokeAIClient.from_url(invokeai_url, username=ADMIN_EMAIL, password="x") as client:
        with pytest.raises(PermissionDeniedError) as info:
            client.login()
        assert "Multiuser mode is disabled" in str(info.value)


async def _try_connect(url: str, auth: dict[str, str] | None) -> bool:
    sio = socketio.AsyncClient(reconnection=False)
    try:
        # websocket only: InvokeAI 6.14 answers engine.io's polling handshake with a 500.
        await sio.connect(
            url, socketio_path=SOCKETIO_PATH, auth=auth, transports=["websocket"], wait_timeout=10
        )
    except socketio.exceptions.ConnectionError:
        return False
    try:
        ack = await sio.call("subscribe_queue", {"queue_id": "default"}, timeout=10)
        return bool(sio.connected) and ack is not False
    finally:
        await sio.disconnect()


async def test_socketio_handshake_takes_the_token_in_auth(
    multiuser_url: str, admin_client: InvokeAIClient
) -> None:
    token = admin_client._http.token
    assert token
    assert await _try_connect(multiuser_url, {"token": token}) is True
    assert await _try_connect(multiuser_url, None) is False
    assert await _try_connect(multiuser_url, {"token": "not-a-jwt"}) is False


async def test_client_socketio_session_sends_the_token(admin_client: InvokeAIClient) -> None:
    async with admin_client.socketio_session() as sio:
        assert sio.connected


def test_client_logs_in_by_itself_and_again_after_a_401(
    multiuser_url: str, admin_ready: object
) -> None:
    with InvokeAIClient.from_url(
        multiuser_url, username=ADMIN_EMAIL, password=ADMIN_PASSWORD
    ) as client:
        assert client._http.token is None
        assert isinstance(client.board_repo.list_boards(), list)  # logged in lazily
        first = client._http.token
        assert first
        client._http.token = "expired.or.revoked"
        assert isinstance(client.board_repo.list_boards(), list)  # 401 -> login -> retried
        assert client._http.token not in (None, "expired.or.revoked")
