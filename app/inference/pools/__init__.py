"""Where a model version's backends run: in this process, or in predictor child processes."""

from __future__ import annotations

from typing import Literal

from app.inference.backends import BackendSpec, load_backend
from app.inference.handler import ModelHandler
from app.inference.pools.base import Lender, Pool, PoolBusyError
from app.inference.pools.in_process import InProcessPool
from app.inference.pools.processes import ProcessPool

Isolation = Literal["process", "thread"]


def create_pool(isolation: Isolation, backend: BackendSpec, handler: ModelHandler, size: int, name: str,
                max_rss_mb: float = float("inf")) -> Pool:
    """`size` predictors of `backend`, each running the handler's first three stages beside it."""
    if isolation == "process":
        return ProcessPool(backend, handler.spec, size, name, max_rss_mb)  # each child builds its own copy
    return InProcessPool(load_backend(backend), size, handler)


__all__ = ["InProcessPool", "Isolation", "Lender", "Pool", "PoolBusyError", "ProcessPool", "create_pool"]
