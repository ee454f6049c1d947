"""Model runtimes behind one seam (base.py). A new runtime is one module here with a class that
has `load(spec) -> Backend`, named in BACKENDS; pools, the batcher and the routes stay as they are.
Modules are imported on first use, so a predictor process imports only the runtime it runs."""

from __future__ import annotations

import importlib

from app.inference.backends.base import Backend, BackendOptions, BackendSpec

# kind -> "module:class"
BACKENDS: dict[str, str] = {
    "paddle": "app.inference.backends.paddle:PaddleBackend",
}


def load_backend(spec: BackendSpec) -> Backend:
    """Build the backend `spec.kind` names; a kind not in BACKENDS is a ValueError."""
    try:
        target = BACKENDS[spec.kind]
    except KeyError:
        raise ValueError(f"unknown backend {spec.kind!r}: known are {', '.join(sorted(BACKENDS))}") from None
    module_name, class_name = target.split(":")
    backend: Backend = getattr(importlib.import_module(module_name), class_name).load(spec)
    return backend


__all__ = ["BACKENDS", "Backend", "BackendOptions", "BackendSpec", "load_backend"]
