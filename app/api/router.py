"""The API router: every route module, included once."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routes import (
    backends,
    batches,
    boards,
    events,
    health,
    images,
    models,
    runs,
    videos,
    webhooks,
    workflows,
)
from app.metrics import route as metrics
from app.openai_images import router as openai_images

__all__ = ["api_router"]

api_router = APIRouter()
api_router.include_router(workflows.router)
api_router.include_router(runs.router)
api_router.include_router(batches.router)

api_router.include_router(events.router)
api_router.include_router(images.router)
api_router.include_router(videos.router)
api_router.include_router(boards.router)
api_router.include_router(models.router)
api_router.include_router(backends.router)
api_router.include_router(health.router)
api_router.include_router(webhooks.router)
api_router.include_router(openai_images.mapping_router)
api_router.include_router(openai_images.router)
api_router.include_router(metrics.router)
