"""``DnnModelRepository``: the models installed on the server.

The model manager lives under ``/api/v2/models`` (``routers/model_manager.py``), next to the
``/api/v1`` prefix every other route uses, so its URLs are built from the client's prefix.
Filters run here rather than on the server: the server validates ``base_models`` and
``model_type`` against its own enums and would refuse (422) a value it does not know.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._paths import segment
from .._portal import sync_twin
from ..exceptions import InvokeAIError
from .models import IvkDnnModel, ModelInstallJob, filter_models, parse_models

if TYPE_CHECKING:
    from .._http import HttpCore
    from ..client import InvokeAIClient

__all__ = ["DnnModelRepository", "ModelInstallError", "ModelNotFoundError", "models_api_prefix"]

# How often an install job is read while it runs: a local folder installs in well under a
# second, so a short period keeps the wait close to the server's own time.
INSTALL_POLL_SECONDS = 0.2


class ModelNotFoundError(InvokeAIError, LookupError):
    """No installed model answers to a key or name, or several share the name."""


class ModelInstallError(InvokeAIError):
    """An install job ended in ``error`` or ``cancelled``, or did not end in time."""

    def __init__(self, message: str, job: ModelInstallJob | None = None) -> None:
        super().__init__(message)
        self.job = job


def models_api_prefix(api_prefix: str) -> str:
    """The model manager's prefix for a client prefix: ``/api/v1`` -> ``/api/v2/models``.

    Example:
        >>> models_api_prefix("/invoke/api/v1")
        '/invoke/api/v2/models'
    """
    parent = api_prefix.rstrip("/").rsplit("/", 1)[0]
    return f"{parent}/v2/models"


class DnnModelRepository:
    """Installed models (``client.dnn_model_repo``).

    Example:
        >>> sdxl = client.dnn_model_repo.list_models(base="sdxl", type="main")
    """

    def __init__(self, client: InvokeAIClient) -> None:
        self._client = client
        self._http: HttpCore = client._http
        self._portal = client._portal

    def _url(self, path: str) -> str:
        return f"{self._http.base_url}{models_api_prefix(self._http.api_prefix)}{path}"

    async def alist_models(
        self, base: str | None = None, type: str | None = None
    ) -> list[IvkDnnModel]:
        """Every installed model, optionally only those of one base and/or type.

        Args:
            base: e.g. ``BaseModelEnum.SDXL`` or ``"sdxl"``; unknown strings match nothing.
            type: e.g. ``ModelType.MAIN`` or ``"main"``.

        Returns:
            The models, ordered by name as the server sends them.
        """
        body = await self._http.get_json(self._url("/"), absolute=True)
        return filter_models(parse_models(body), base=base, type=type)

    list_models = sync_twin(alist_models)

    async def aget_model_by_key(self, key: str) -> IvkDnnModel:
        """One model by its key.

        Raises:
            NotFoundError: no model has this key.
        """
        body = await self._http.get_json(self._url(f"/i/{segment(key)}"), absolute=True)
        return IvkDnnModel.model_validate(body)

    get_model_by_key = sync_twin(aget_model_by_key)

    async def afind_models(
        self,
        name: str | None = None,
        *,
        base: str | None = None,
        type: str | None = None,
        exact: bool = False,
    ) -> list[IvkDnnModel]:
        """Models whose name contains ``name`` (case-insensitive), of a base and type.

        Args:
            name: text to look for in model names (whole name when ``exact``).
            base: only this base.
            type: only this type.
            exact: match the whole name instead of a part of it.
        """
        models = await self.alist_models(base=base, type=type)
        return filter_models(models, name=name, exact=exact)

    find_models = sync_twin(afind_models)

    async def aresolve_model(
        self, key_or_name: str, *, base: str | None = None, type: str | None = None
    ) -> IvkDnnModel:
        """The installed model with this key, or else with exactly this name.

        Names are kept across servers while keys are not, so a script can name its models;
        ``base`` (and ``type``) pick one when several models share a name.

        Raises:
            ModelNotFoundError: no model has this key or name, or several share the name
                (the message lists them with their bases and types).
        """
        models = await self.alist_models()
        by_key = [m for m in models if m.key == key_or_name]
        if by_key:
            return by_key[0]
        named = filter_models(models, name=key_or_name, exact=True, base=base, type=type)
        if len(named) == 1:
            return named[0]
        if not named:
            wanted = ", ".join(str(x) for x in (base, type) if x)
            raise ModelNotFoundError(
                f"no installed model has the key or name {key_or_name!r}"
                + (f" ({wanted})" if wanted else "")
            )
        listed = "; ".join(f"{m.name} {m.base}/{m.type} (key {m.key})" for m in named)
        raise ModelNotFoundError(
            f"{len(named)} models are named {key_or_name!r}: {listed}; give base or type"
        )

    resolve_model = sync_twin(aresolve_model)

    async def ainstall_model(
        self,
        source: str,
        *,
        inplace: bool = True,
        config: Mapping[str, Any] | None = None,
        timeout: float = 600.0,
        on_progress: Callable[[ModelInstallJob], None] | None = None,
    ) -> IvkDnnModel:
        """Install a model from a local path (file or diffusers folder) or a URL, and wait.

        Args:
            source: an absolute path on the server's machine, a URL, or a Hugging Face repo id.
            inplace: keep a local model where it is instead of copying it into the models folder.
            config: values that override what the server probes (``name``, ``description``...).
            timeout: seconds to wait for the job to finish.
            on_progress: called with the job every time it is read while it runs.

        Returns:
            The installed model's record.

        Raises:
            ConflictError: the model (by path or repo id) is installed already.
            ModelInstallError: the job ended in error or was cancelled (the server's reason
                in the message), or did not finish within ``timeout``.
        """
        body = await self._http.post_json(
            self._url("/install"),
            absolute=True,
            params={"source": source, "inplace": str(inplace).lower()},
            json_body=dict(config or {}),
        )
        job = await self.await_install_job(
            ModelInstallJob.model_validate(body), timeout=timeout, on_progress=on_progress
        )
        if job.status != "completed" or job.config_out is None:
            reason = job.error_reason or job.error or job.status
            raise ModelInstallError(f"installing {source!r} ended {job.status}: {reason}", job)
        return job.config_out

    install_model = sync_twin(ainstall_model)

    async def await_install_job(
        self,
        job: ModelInstallJob,
        *,
        timeout: float = 600.0,
        on_progress: Callable[[ModelInstallJob], None] | None = None,
    ) -> ModelInstallJob:
        """Read an install job until it finishes; the job as last read."""
        deadline = time.monotonic() + timeout
        while not job.finished:
            if on_progress is not None:
                on_progress(job)
            if time.monotonic() > deadline:
                raise ModelInstallError(f"install job {job.id} still {job.status}", job)
            await asyncio.sleep(INSTALL_POLL_SECONDS)
            body = await self._http.get_json(self._url(f"/install/{job.id}"), absolute=True)
            job = ModelInstallJob.model_validate(body)
        return job

    async def adelete_model(self, key: str) -> None:
        """Delete an installed model (a model installed in place keeps its files).

        Raises:
            NotFoundError: no model has this key.
        """
        await self._http.delete_json(self._url(f"/i/{segment(key)}"), absolute=True)

    delete_model = sync_twin(adelete_model)
