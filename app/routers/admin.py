"""Operator routes: reload the model repository without a restart. Bearer token required;
disabled (404) when APP_ADMIN_TOKEN is unset."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header

from app.errors import ApiError
from app.routers.deps import ServiceDep
from app.schemas import ErrorResponse, ReloadResponse

router = APIRouter(prefix="/v1/admin", tags=["admin"])


async def require_admin(service: ServiceDep, authorization: Annotated[str | None, Header()] = None) -> None:
    token = service.settings.admin_token
    if token is None:
        raise ApiError(404, "not_found", "admin routes are disabled (set APP_ADMIN_TOKEN to enable them)")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise ApiError(401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required",
                       headers={"WWW-Authenticate": "Bearer"})


@router.post("/reload", response_model=ReloadResponse, dependencies=[Depends(require_admin)],
             summary="Rescan the model directory: load new and changed versions, drop removed ones",
             responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def reload(service: ServiceDep) -> ReloadResponse:
    report = await service.reload()
    return ReloadResponse(loaded=report.loaded, unchanged=report.unchanged, removed=report.removed,
                          failed=report.failed)
