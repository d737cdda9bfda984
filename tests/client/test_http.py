"""The HTTP shell: retries only where safe, errors translated with the server's detail."""

from __future__ import annotations

import httpx
import pytest

from invokeai_py_client import (
    APIConnectionError,
    APITimeoutError,
    InvokeAIClient,
    NotFoundError,
    ServerError,
    UnprocessableEntityError,
)
from invokeai_py_client._retry import backoff, is_idempotent, parse_retry_after, should_retry_status


def _client(handler: httpx.MockTransport, **kwargs: object) -> InvokeAIClient:
    return InvokeAIClient("test", 9090, transport=handler, **kwargs)  # type: ignore[arg-type]


async def test_get_retries_server_errors_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("invokeai_py_client._http.backoff", lambda *a, **k: 0)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            return httpx.Response(503)
        return httpx.Response(200, json={"version": "6.14.2"})

    client = _client(httpx.MockTransport(handler))
    assert await client.aversion() == "6.14.2"
    assert len(calls) == 3
    await client.aclose()


async def test_post_is_never_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("invokeai_py_client._http.backoff", lambda *a, **k: 0)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(502, json={"detail": "bad gateway"})

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(ServerError) as info:
        await client._http.request("POST", "/queue/default/enqueue_batch", json_body={})
    assert len(calls) == 1
    assert info.value.status_code == 502
    assert "bad gateway" in str(info.value)
    await client.aclose()


async def test_retries_give_up_after_max_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("invokeai_py_client._http.backoff", lambda *a, **k: 0)
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    client = _client(httpx.MockTransport(handler), max_retries=4)
    with pytest.raises(APIConnectionError) as info:
        await client.aversion()
    assert len(calls) == 5
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    await client.aclose()


async def test_timeout_is_translated() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    client = _client(httpx.MockTransport(handler), max_retries=0)
    with pytest.raises(APITimeoutError):
        await client.aversion()
    await client.aclose()


async def test_status_errors_keep_body_and_detail() -> None:
    detail = [
        {"loc": ["body", "batch", "graph", "nodes", "n1", "blank_image", "width"], "msg": "bad"}
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("missing"):
            return httpx.Response(404, json={"detail": "Image not found"})
        return httpx.Response(422, json={"detail": detail})

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(NotFoundError) as nf:
        await client._http.request("GET", "/images/i/missing")
    assert nf.value.detail == "Image not found"
    with pytest.raises(UnprocessableEntityError) as ue:
        await client._http.request("POST", "/queue/default/enqueue_batch", json_body={})
    assert ue.value.detail == detail
    assert "width" in str(ue.value)
    await client.aclose()


async def test_refreshed_token_is_used_for_later_requests() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"version": "x"}, headers={"X-Refreshed-Token": "new"})

    client = _client(httpx.MockTransport(handler), api_key="old")
    await client.aversion()
    await client.aversion()
    assert seen == ["Bearer old", "Bearer new"]
    await client.aclose()


def test_sync_and_async_share_one_core() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"version": "6.14.2"})

    with _client(httpx.MockTransport(handler)) as client:
        assert client.version() == "6.14.2"
        assert client.health_check() is True


def test_health_check_never_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with _client(httpx.MockTransport(handler), max_retries=0) as client:
        assert client.health_check() is False


@pytest.mark.parametrize(
    ("method", "expected"), [("GET", True), ("PUT", True), ("DELETE", True), ("POST", False)]
)
def test_idempotent_methods(method: str, expected: bool) -> None:
    assert is_idempotent(method) is expected


def test_retry_statuses() -> None:
    assert should_retry_status(503) and should_retry_status(429) and should_retry_status(408)
    assert not should_retry_status(404) and not should_retry_status(422)


def test_backoff_doubles_to_a_cap_with_bounded_jitter() -> None:
    for attempt, nominal in [(0, 0.5), (1, 1.0), (2, 2.0), (10, 8.0)]:
        delay = backoff(attempt)
        assert nominal * 0.75 <= delay <= nominal
    assert backoff(3, retry_after=1.5) == 1.5


def test_retry_after_parsing() -> None:
    def resp(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert parse_retry_after(resp("2")) == 2.0
    assert parse_retry_after(resp("3600")) is None
    assert parse_retry_after(resp("Wed, 21 Oct 2015 07:28:00 GMT"), now=1445412478.0) == 2.0
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("url", "base_url", "base_path"),
    [
        ("http://127.0.0.1:9090", "http://127.0.0.1:9090", "/api/v1"),
        ("https://invoke.example.com", "https://invoke.example.com:443", "/api/v1"),
        ("localhost:9091", "http://localhost:9091", "/api/v1"),
        ("http://h:1/custom/api", "http://h:1", "/custom/api"),
    ],
)
def test_from_url(url: str, base_url: str, base_path: str) -> None:
    client = InvokeAIClient.from_url(url)
    assert client.base_url == base_url
    assert client.base_path == base_path


def test_from_url_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="ftp://x"):
        InvokeAIClient.from_url("ftp://x")


async def test_a_non_json_success_is_our_error() -> None:
    """InvokeAI answers unknown paths with its web UI's HTML and a 200."""
    from invokeai_py_client import APIResponseValidationError

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<!doctype html><html></html>", headers={"content-type": "text/html"}
        )

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(APIResponseValidationError, match="text/html"):
        await client._http.get_json("/boards/%2F")
    await client.aclose()


async def test_a_video_byte_range_goes_with_the_request_and_its_206_comes_back() -> None:
    # A test transport takes the fallback path of ``stream_bytes`` (no aiohttp): the Range
    # header must reach the server there too. The aiohttp path is proven against the real
    # server (tests/app/test_real_models_gateway.py, Wan).
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("range"))
        headers = {"content-range": "bytes 2-4/10", "content-type": "video/mp4"}
        return httpx.Response(206, headers=headers, content=b"cde")

    client = _client(httpx.MockTransport(handler))
    async with client.board_repo.aopen_video("v.mp4", byte_range="bytes=2-4") as opened:
        body = b"".join([chunk async for chunk in opened.chunks])
    assert (opened.status, body, opened.headers["content-range"]) == (206, b"cde", "bytes 2-4/10")
    async with client.board_repo.aopen_video("v.mp4") as whole:
        assert whole.status == 206  # what the handler answers; no Range was sent
    assert seen == ["bytes=2-4", None]
    await client.aclose()
