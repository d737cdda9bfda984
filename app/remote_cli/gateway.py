"""The gateway over HTTP, as the client commands use it: every failure becomes a ``CommandFailed``.

The commands talk to the gateway only through these calls (plain HTTP and its SSE stream), so
they work against any gateway, local or remote. A status error carries the gateway's own
problem+json text, with each bad input named by index and label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from app.remote_cli.exit_codes import CommandFailed, ExitCode
from app.remote_cli.wire import RunInfo, RunsPage, WorkflowInfo

__all__ = ["GatewayHttp", "problem_text"]

# Statuses that say "try later or fix the setup", not "fix your input".
UNAVAILABLE_STATUSES = frozenset({401, 403, 429})


def problem_text(response: httpx.Response) -> str:
    """The gateway's error as one readable text: title, detail, then each listed error."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {body}"
    lines = [f"{body.get('title') or 'Error'} (HTTP {response.status_code}): {body.get('detail')}"]
    for error in body.get("errors") or []:
        lines.append("  - " + _error_line(error))
    return "\n".join(lines)


def _error_line(error: dict[str, Any]) -> str:
    where = []
    if error.get("index") is not None:
        where.append(f"input {error['index']}")
    if error.get("label"):
        where.append(f"({error['label']})")
    if error.get("loc"):
        where.append(".".join(map(str, error["loc"])))
    reason = error.get("reason") or error.get("msg") or json.dumps(error)
    return f"{' '.join(where)}: {reason}" if where else str(reason)


class GatewayHttp:
    """One connection pool to the gateway at ``base_url``, with the API key when given."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raise ``CommandFailed`` for a transport error or a 4xx/5xx."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self.raise_for_status(response)
        return response

    def raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        text = problem_text(response)
        if response.status_code in (401, 403):
            text += "\n(set GATEWAY_API_KEY to a key the gateway accepts)"
        if response.status_code >= 500 or response.status_code in UNAVAILABLE_STATUSES:
            raise CommandFailed(ExitCode.UNAVAILABLE, text)
        raise CommandFailed(ExitCode.BAD_INPUT, text)

    def _unreachable(self, exc: Exception) -> CommandFailed:
        return CommandFailed(
            ExitCode.UNAVAILABLE, f"cannot reach the gateway at {self.base_url}: {exc}"
        )

    # -- workflows --

    def add_workflow(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as file:
            files = {"file": (path.name, file, "application/json")}
            body: dict[str, Any] = self.request("POST", "/workflows", files=files).json()
        return body

    def list_workflows(self) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", "/workflows").json()
        return body

    def find_workflow(self, name_or_id: str) -> WorkflowInfo:
        """The workflow with this id, else the one with this name (exactly one must match)."""
        try:
            response = self._http.get(f"/workflows/{name_or_id}")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != 404:
            self.raise_for_status(response)
            return WorkflowInfo.model_validate(response.json())
        listed = [WorkflowInfo.model_validate(w) for w in self.list_workflows()["data"]]
        named = [w for w in listed if w.name == name_or_id]
        if not named:
            detail = f"no workflow has the id or name {name_or_id!r}"
            raise CommandFailed(ExitCode.BAD_INPUT, detail)
        if len(named) > 1:
            ids = ", ".join(w.id for w in named)
            raise CommandFailed(
                ExitCode.BAD_INPUT, f"{len(named)} workflows are named {name_or_id!r}: {ids}"
            )
        return named[0]

    # -- images --

    def upload_image(self, path: Path) -> str:
        """Upload a local image through the gateway; its name on InvokeAI."""
        try:
            file = path.open("rb")
        except OSError as exc:
            raise CommandFailed(ExitCode.BAD_INPUT, f"cannot read {path}: {exc}") from exc
        with file:
            response = self.request("POST", "/images", files={"file": (path.name, file)})
        return str(response.json()["image_name"])

    def download_image(self, image_name: str, target: Path) -> None:
        """Stream one image into ``target``."""
        try:
            with self._http.stream("GET", f"/images/{image_name}") as response:
                if response.status_code >= 400:
                    response.read()
                    self.raise_for_status(response)
                with target.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    # -- runs --

    def start_run(self, workflow_id: str, body: dict[str, Any]) -> RunInfo:
        response = self.request("POST", f"/workflows/{workflow_id}/runs", json=body)
        return RunInfo.model_validate(response.json())

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self.request("GET", f"/runs/{run_id}").json())

    def list_runs(self, params: dict[str, Any]) -> RunsPage:
        return RunsPage.model_validate(self.request("GET", "/runs", params=params).json())

    def cancel_run(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self.request("POST", f"/runs/{run_id}/cancel").json())

    def run_events(self, run_id: str, after: int | None) -> Iterator[ServerSentEvent]:
        """The run's events after event id ``after``, until the stream ends."""
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        timeout = httpx.Timeout(10.0, read=None)  # the stream is quiet between events
        try:
            with connect_sse(
                self._http, "GET", f"/runs/{run_id}/events", headers=headers, timeout=timeout
            ) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    self.raise_for_status(source.response)
                yield from source.iter_sse()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
