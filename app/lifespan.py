"""Start-up and shut-down: choose the device, load and warm every model in the background, release."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

from fastapi import FastAPI

from app.config import Settings
from app.inference.backends import BackendOptions, BackendUnavailableError, missing_package
from app.inference.backends.paddle import import_paddle, resolve_device
from app.inference.cpu import usable_cpus
from app.inference.model_version import LoadOptions
from app.inference.registry import ModelRegistry, VersionStatus
from app.service import ModelService
from app.signals import restore_signal_handlers
from app.telemetry import record_model_load

log = logging.getLogger(__name__)

GIL_SWITCH_SECONDS = 0.001


def build_load_options(settings: Settings) -> LoadOptions:
    """Raises DeviceUnavailableError for APP_DEVICE=gpu without a usable GPU, and
    BackendUnavailableError for a runtime that is not installed: fail at start, loudly."""
    for kind in {settings.backend, *settings.model_backend.values()} - {"auto"}:
        if (missing := missing_package(kind)) is not None:
            raise BackendUnavailableError(missing)
    device, reason = resolve_device(settings.device)
    log.info("inference device: %s (%s)", device, reason)
    measure_threads = settings.cpu_threads == 0
    # One thread per predictor for batches that run side by side, and a solo copy on all of a
    # predictor's share of the cores for a batch alone, kept where it is faster (decide_threads).
    backend = BackendOptions(device=device, cpu_threads=1 if measure_threads else settings.cpu_threads,
                             solo_threads=max(1, usable_cpus() // settings.predictors) if measure_threads else 0,
                             onednn=settings.onednn, gpu_id=settings.gpu_id, gpu_memory_mb=settings.gpu_memory_mb,
                             omp_blocktime_ms=settings.omp_blocktime_ms)
    return LoadOptions(backend=backend, backend_kind=settings.backend, model_backend=dict(settings.model_backend),
                       predictors=settings.predictors,
                       max_image_pixels=settings.max_image_pixels, device_reason=reason,
                       max_batch_size=settings.max_batch_size,
                       model_max_batch_size=dict(settings.model_max_batch_size), isolation=settings.isolation,
                       measure_threads=measure_threads, predictor_max_rss_mb=settings.predictor_max_memory_mb)


def reclaim_signal_handlers() -> None:
    """Import Paddle here, in the main thread, and give SIGINT/SIGTERM back to Python (uvicorn):
    see app/signals.py."""
    import_paddle()
    restore_signal_handlers()


def drain_on_sigterm(service: ModelService, seconds: float) -> None:
    """On SIGTERM, turn readiness to 503 at once and keep serving for `seconds`, so a load balancer
    stops sending before the server (uvicorn's own handler, called after) closes its socket and
    finishes the requests in flight."""
    if threading.current_thread() is not threading.main_thread():
        return  # a host that runs the lifespan off the main thread (Ray Serve) owns the signals
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or seconds <= 0:
        return
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if service.draining:
            return
        service.draining = True
        log.warning("SIGTERM: readiness is now 503; stopping in %.1fs", seconds)
        loop.call_soon_threadsafe(loop.call_later, seconds, previous, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def record_version_state(name: str, version: int, status: VersionStatus) -> None:
    backend = status.model.backend_choice.kind if status.model is not None else None
    record_model_load(name, version, ready=status.model is not None, failed=status.error is not None, backend=backend)


async def poll_model_directory(service: ModelService, seconds: float) -> None:
    """APP_MODEL_POLL_SECONDS: reload on a timer, for deployments that copy models in place."""
    await asyncio.to_thread(service.registry.loaded.wait)
    while True:
        await asyncio.sleep(seconds)
        try:
            report = await service.reload()
            if report.loaded or report.removed:
                log.info("model poll: loaded %s, removed %s", report.loaded, report.removed)
        except Exception:  # noqa: BLE001 - a failed poll must not stop the next one
            log.exception("model poll failed")


async def load_then_freeze_heap(registry: ModelRegistry) -> None:
    """Load every model, then move everything alive so far (Paddle's modules alone are well over
    a hundred thousand objects) out of the garbage collector's reach: a full collection over them
    is a pause every request in flight waits for (seen as long tails under load)."""
    await asyncio.to_thread(registry.load_all)
    restore_signal_handlers()  # loading may have created Paddle predictors in this process
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    registry = ModelRegistry(settings.model_dir, build_load_options(settings), on_change=record_version_state)
    app.state.service = service = ModelService(settings, registry)
    reclaim_signal_handlers()
    # Decoding threads hold the GIL in their Python steps; at the default 5 ms switch interval the
    # event loop waits that long for it each time, and a refusal that should take a millisecond
    # takes tens under load. 1 ms hands it back sooner at a small cost in throughput.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    drain_on_sigterm(service, settings.drain_seconds)
    # Load in the background so /healthz answers at once and /readyz reports progress.
    loading = asyncio.create_task(load_then_freeze_heap(registry))
    poller = (asyncio.create_task(poll_model_directory(service, settings.model_poll_seconds))
              if settings.model_poll_seconds > 0 else None)
    log_admin_state(settings)
    try:
        yield
    finally:
        if poller:
            poller.cancel()
        await shut_down(service, loading, settings.shutdown_seconds)
        app.state.service = None


def log_admin_state(settings: Settings) -> None:
    if settings.admin_token is None:
        log.info("admin routes are disabled: APP_ADMIN_TOKEN is unset or empty")
    else:
        log.info("admin routes are enabled (bearer token from APP_ADMIN_TOKEN)")


async def shut_down(service: ModelService, loading: asyncio.Task[None], seconds: float) -> None:
    """Finish loading, drain and stop, each within `seconds`; past that, predictor processes are
    killed, so that a stuck predictor never keeps the server from exiting."""
    try:
        await asyncio.wait_for(asyncio.shield(loading), seconds)
    except TimeoutError:
        log.error("models were still loading %.0f s after shutdown began", seconds)
    try:
        await asyncio.wait_for(service.close(), 2 * seconds)
    except TimeoutError:
        log.error("shutdown took over %.0f s; killing the predictor processes", 2 * seconds)
        await asyncio.to_thread(service.kill)
