"""``DnnModelRepository``: the models installed on the server.

The model manager lives under ``/api/v2/models`` (``routers/model_manager.py``), next to the
``/api/v1`` prefix every other route uses, so its URLs are built from the client's prefix.
Filters run here rather than on the server: the server validates ``base_models`` and
``model_type`` against its own enums and would refuse (422) a value it does not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._paths import segment
from .._portal import sync_twin
from .models import IvkDnnModel, filter_models, parse_models

if TYPE_CHECKING:
    from .._http import HttpCore
    from ..client import InvokeAIClient

__all__ = ["DnnModelRepository", "models_api_prefix"]


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
