"""Running a workflow for an OpenAI image request: n runs, waited for, their images collected.

Each image is one run through the gateway's own run service (``RunService.submit``), so it
is recorded, followed, and delivered to webhooks like any other run. Only the inputs that
play a role are sent; every other input keeps the value the registered file holds. With
``n`` > 1 each run gets its own seed (``seed + i`` when the request gives one, random
otherwise) when the workflow has a seed input.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from app.core.errors import InputInvalid
from app.db.tables import Run, RunStatus
from app.openai_images.errors import SERVER_ERROR, OpenAIError
from app.openai_images.mapping import MappedInput, Role
from app.openai_images.requests import ImageRequest, Size
from app.openai_images.store import ServedWorkflow, load_run
from app.runs.service import RunService, Submission
from app.streaming.broker import Event, EventBroker, SubscriberLagging, is_terminal_event

__all__ = ["RUN_WAIT_SECONDS", "ImageJob", "run_images"]

# How long one request waits for its runs; the OpenAI SDKs' own default timeout is 600 s.
RUN_WAIT_SECONDS = 590.0
# How often a run is read again while no event arrives (a missed or lagging event).
RECHECK_SECONDS = 2.0
TERMINAL_STATUSES = frozenset(s.value for s in RunStatus if s.terminal)
# Seeds drawn for runs without one: the range every InvokeAI seed input accepts.
SEED_MAX = 2**31 - 1


@dataclass(frozen=True)
class ImageJob:
    """One OpenAI request, checked and mapped onto one workflow."""

    served: ServedWorkflow
    request: ImageRequest
    size: Size | None
    image_name: str | None = None  # an uploaded image, for edits


def _role_values(job: ImageJob, seed: int | None) -> dict[Role, Any]:
    values: dict[Role, Any] = {Role.prompt: job.request.prompt}
    if job.request.negative_prompt is not None:
        values[Role.negative_prompt] = job.request.negative_prompt
    if job.size is not None:
        values[Role.width], values[Role.height] = job.size.width, job.size.height
    if seed is not None:
        values[Role.seed] = seed
    if job.image_name is not None:
        values[Role.image] = job.image_name
    return values


def _seeds(job: ImageJob) -> list[int | None]:
    n = job.request.n
    if Role.seed not in job.served.roles:
        return [None] * n
    if job.request.seed is not None:
        return [job.request.seed + i for i in range(n)]
    return [random.randint(0, SEED_MAX) for _ in range(n)]


def run_inputs(job: ImageJob, seed: int | None) -> dict[str, Any]:
    """The run body's inputs: one value per role the workflow has; the rest untouched."""
    roles = job.served.roles
    return {str(roles[r].index): v for r, v in _role_values(job, seed).items() if r in roles}


def _param_of(index: Any, roles: dict[Role, MappedInput]) -> str | None:
    for role, mapped in roles.items():
        if mapped.index == index:
            return {Role.width: "size", Role.height: "size"}.get(role, role.value)
    return None


def _input_error(exc: InputInvalid, roles: dict[Role, MappedInput]) -> OpenAIError:
    problems = exc.errors or []
    reasons = [f"input {p.get('index')} ({p.get('label')}): {p.get('reason')}" for p in problems]
    param = _param_of(problems[0].get("index"), roles) if problems else None
    message = "; ".join(reasons) or exc.detail
    return OpenAIError(message, param=param, code="invalid_value")


async def _submit_all(service: RunService, job: ImageJob) -> list[Run]:
    runs: list[Run] = []
    for seed in _seeds(job):
        sub = Submission(workflow=job.served.workflow, inputs=run_inputs(job, seed))
        try:
            run, _replayed = await service.submit(sub)
        except InputInvalid as exc:
            raise _input_error(exc, job.served.roles) from exc
        runs.append(run)
    return runs


async def _finished(engine: Engine, broker: EventBroker, run_id: str) -> Run:
    """The run once it is terminal: follows its events, reads it again now and then."""
    async with broker.subscribe(run_id=run_id) as events:
        while True:
            run = await asyncio.to_thread(load_run, engine, run_id)
            if run is not None and run.status in TERMINAL_STATUSES:
                return run
            await _until_terminal_event(events)


async def _until_terminal_event(events: AsyncIterator[Event]) -> None:
    """Return at the run's terminal event, after ``RECHECK_SECONDS`` without any event, or
    when events were dropped: the caller then reads the run again."""
    while True:
        try:
            event = await asyncio.wait_for(anext(events), RECHECK_SECONDS)
        except (TimeoutError, SubscriberLagging):
            return
        except StopAsyncIteration:  # the broker closed (shutdown): poll
            await asyncio.sleep(RECHECK_SECONDS)
            return
        if is_terminal_event(event):
            return


def _failure(run: Run) -> OpenAIError:
    error = run.error or {}
    why = error.get("error_message") or error.get("error_type") or "no reason given"
    verb = "was canceled" if run.status == RunStatus.canceled.value else "failed"
    return OpenAIError(
        f"run {run.id} {verb}: {why}",
        status=500,
        type_=SERVER_ERROR,
        code=f"run_{run.status}",
        headers={"x-should-retry": "false"},
    )


def image_names(run: Run) -> list[str]:
    """Every image a finished run produced, output node by output node."""
    return [name for output in run.outputs or [] for name in output.get("image_names") or []]


async def run_images(
    service: RunService, engine: Engine, broker: EventBroker, job: ImageJob
) -> list[str]:
    """Run the job's runs and return the names of the images they made.

    Raises:
        OpenAIError: a bad value (400), a run that failed or was canceled (500), no image
            made (500), or the runs outlasting ``RUN_WAIT_SECONDS`` (504).
    """
    runs = await _submit_all(service, job)
    waits = [_finished(engine, broker, run.id) for run in runs]
    try:
        finished = await asyncio.wait_for(asyncio.gather(*waits), RUN_WAIT_SECONDS)
    except TimeoutError as exc:
        ids = ", ".join(run.id for run in runs)
        raise OpenAIError(
            f"the runs ({ids}) did not finish within {RUN_WAIT_SECONDS:.0f} s; "
            "they keep running (GET /runs/{id})",
            status=504,
            type_=SERVER_ERROR,
            code="timeout",
            headers={"x-should-retry": "false"},
        ) from exc
    names: list[str] = []
    for run in finished:
        if run.status != RunStatus.succeeded.value:
            raise _failure(run)
        names.extend(image_names(run))
    if not names:
        raise OpenAIError(
            f"workflow {job.served.workflow.name!r} made no image "
            "(it needs a non-intermediate image node)",
            status=500,
            type_=SERVER_ERROR,
            code="no_image",
            headers={"x-should-retry": "false"},
        )
    return names
