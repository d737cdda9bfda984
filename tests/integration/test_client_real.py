"""The client's own surface against the real server."""

from __future__ import annotations

import pytest

from invokeai_py_client import InvokeAIClient, NotFoundError

pytestmark = pytest.mark.invokeai


def test_health_check_and_version(client: InvokeAIClient) -> None:
    assert client.health_check() is True
    assert client.version() == "6.14.2"


async def test_async_twins(aclient: InvokeAIClient) -> None:
    assert await aclient.ahealth_check() is True
    assert await aclient.aversion() == "6.14.2"


def test_health_check_false_when_nothing_listens() -> None:
    from tests.support.invokeai_server import free_port

    with InvokeAIClient("127.0.0.1", free_port(), max_retries=0) as c:
        assert c.health_check() is False


def test_status_error_from_real_server(client: InvokeAIClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client._portal.call(client._http.request("GET", "/images/i/no-such-image.png"))
    assert info.value.status_code == 404


async def test_socketio_session_connects(aclient: InvokeAIClient) -> None:
    async with aclient.socketio_session() as sio:
        assert sio.connected


def test_context_manager_closes_the_portal(invokeai_url: str) -> None:
    with InvokeAIClient.from_url(invokeai_url) as c:
        assert c.health_check()
        assert c._portal.running
    assert not c._portal.running


async def test_failed_socketio_connect_leaves_no_open_session() -> None:
    """A refused Socket.IO connection must not leak engine.io's aiohttp session."""
    import gc
    import warnings

    from invokeai_py_client import APIConnectionError
    from tests.support.invokeai_server import free_port

    client = InvokeAIClient("127.0.0.1", free_port(), max_retries=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            with pytest.raises(APIConnectionError):
                async with client.socketio_session():
                    pass
        gc.collect()
    await client.aclose()
    leaks = [w for w in caught if "Unclosed client session" in str(w.message)]
    assert leaks == []


def test_a_path_that_falls_through_to_the_web_ui_is_a_clear_error(client: InvokeAIClient) -> None:
    """InvokeAI serves its HTML page, with a 200, for paths no route matches."""
    from invokeai_py_client import APIResponseValidationError

    with pytest.raises(APIResponseValidationError, match="not JSON"):
        client.board_repo.get_board("/")
