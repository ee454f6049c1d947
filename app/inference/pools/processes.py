"""Predictors in child processes (APP_ISOLATION=process, the default), so that inference never
holds the server's GIL.

Paddle Inference's `run()` keeps the GIL for the whole forward pass (a thread running a batch slows
the event loop's thread several times over). In process isolation each predictor lives in a
child process; the event loop only writes the batch to a pipe and is woken (`add_reader`) when the
result is back, so it keeps parsing, decoding and refusing overloads while a batch runs.

A child also decodes and preprocesses: `classify_async` sends the encoded images (a few KB each, where
a 224x224 input is 600 KB of float32) and the child builds the model's handler from the same
spec. The server process is left with HTTP, and per request it keeps only what costs it least.
Decoding runs right before the model on the same core, as in the in-process pipeline, instead of
in server threads that preempt the predictor's math threads mid-batch; and hostile bytes that
crash a decoder crash a child, which restarts, not the server.

Children come from a fork server that has imported Paddle once: a new child starts in a fraction
of the time a fresh interpreter takes and shares Paddle's pages. The wire format
(wire.py) goes over a pipe rather than shared memory: the
64 MiB /dev/shm that containers get by default would cap batch sizes, and copying a 224x224 batch
through the pipe costs well under a millisecond per image.

A child that dies (a crash inside Paddle, the OOM killer) fails only the batch it was running;
the next batch starts a fresh child, and `restarts` counts it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from app.inference.backends import BackendSpec, load_backend
from app.inference.handler import Classified, HandlerSpec
from app.inference.pools.base import Lender
from app.inference.pools.wire import (
    Buffer,
    decode_reply,
    encode_items,
    encode_reply,
    float32_bytes,
    send_header,
    send_messages,
    split_payload,
)
from app.inference.preprocess import Input

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0
PREDICTOR_NICENESS = 5
# After a batch that ran alone, how long a predictor polls for the next request before it sleeps:
# about one HTTP answer and the next request of a client that sends one image at a time.
LONE_BATCH_POLL_S = 0.002

_context_lock = threading.Lock()
_context: Any = None


def process_context() -> Any:
    """The fork-server context, with Paddle preloaded in the server (started on first use)."""
    global _context
    with _context_lock:
        if _context is None:
            # The fork server is a fresh interpreter that imports Paddle, which warns at import
            # that ccache is missing: irrelevant to inference, which compiles nothing.
            os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"),
                                                                  "ignore:No ccache found"]))
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["app.inference.pools.processes", "paddle"])
        return _context


class PredictorCrashedError(RuntimeError):
    """The child process died or broke the protocol while running a batch."""


def ignore_stop_signals() -> None:
    """The server drains on SIGTERM/SIGINT and stops its children itself; a signal sent to the whole
    process group (Ctrl-C, systemd) must not kill inference for requests still in flight."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def serve_predictor(conn: Connection, backend_spec: BackendSpec, handler_spec: HandlerSpec | None) -> None:
    """Child process: build one backend and the model's handler, then answer run/classify requests
    until the pipe closes."""
    ignore_stop_signals()
    name_process("predictor")
    # Inference is throughput work; parsing, admission and refusals in the server are short and
    # latency-bound. When cores are contended (overload), the server's process should win them.
    os.nice(PREDICTOR_NICENESS)
    schedule_as_batch()
    options = backend_spec.options
    # Decoding a batch on all the predictor's cores before the model runs on them, as the in-process
    # pipeline does: Pillow and numpy release the GIL, so the threads decode side by side. A
    # one-thread run decodes in this thread: a pool of one decodes nothing side by side, and beside
    # it other predictor processes have the other cores.
    widest = max(options.cpu_threads, options.solo_threads)
    decoders = ThreadPoolExecutor(widest, thread_name_prefix="decode") if widest > 1 else None
    try:
        backend = load_backend(backend_spec)
        handler = handler_spec.build() if handler_spec is not None else None
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the load
        send_header(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    ignore_stop_signals()  # again: a runtime's import may install handlers of its own (Paddle's does)
    send_header(conn, {"ok": True, "input_name": backend.input_name, "description": backend.describe()})
    heap = HeapKeeper()
    solo = False
    while True:
        if solo and not backend.spins_between_runs:
            poll_for_request(conn, LONE_BATCH_POLL_S)
        try:
            header = json.loads(conn.recv_bytes())
            if header.get("op") == "stop":
                return
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        solo = bool(header.get("solo"))
        explained = b""
        try:
            if header.get("op") == "classify":
                if handler is None:
                    raise RuntimeError("this predictor process was started without a handler")
                inputs = split_payload(header["items"], payload)
                encoded = sum(1 for item in inputs if not isinstance(item, np.ndarray))
                mapper = decoders.map if decoders and options.threads_for(solo) > 1 and encoded > 1 else map
                classified = handler.prepare_and_predict(inputs, partial(backend.run, solo=solo), mapper)
                reply, outputs, explained = encode_reply(classified)
            else:
                batch = np.frombuffer(payload, dtype=np.float32).reshape(header["shape"])
                outputs = backend.run(batch, solo)  # sent as float32 by float32_bytes
                reply = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - fails this batch only
            send_header(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            del payload
        header = {**reply, "shape": list(outputs.shape), "rss_mb": heap.resident_mb_after_batch()}
        messages: list[list[Buffer]] = [[json.dumps(header).encode()], [float32_bytes(outputs)]]
        if reply.get("explained"):
            messages.append([explained])
        send_messages(conn, messages)  # one write: the outputs (an empty result too), the inputs asked for back


def poll_for_request(conn: Connection, seconds: float) -> None:
    """Return once a request is waiting, or after `seconds`, without sleeping in between.

    A client sending one image at a time waits for each answer, and every hop of its request that
    wakes a sleeping process costs it: the wake-up itself, and a core and caches gone cold. Where
    the runtime's own threads sleep at once (ONNX Runtime, OpenVINO), a predictor that polls for
    the next request answers it sooner; where they spin after a run (Paddle's OpenMP), polling as
    well takes the server's core and makes it slower (docs/performance.md has the figures)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if conn.poll(0):
            return


def schedule_as_batch() -> None:
    """Linux's SCHED_BATCH for this process and the threads it starts: a predictor woken by the
    server's request no longer preempts the server on the server's own core (a pipe write wakes
    its reader there), where the server, still finishing its write, waited runnable for up to the
    whole batch beside an idle core. Elsewhere, or where a sandbox forbids it: nothing changes."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def name_process(name: str) -> None:
    """Set the process's name as ps, top and /proc/<pid>/comm show it (Linux; 15 bytes at most)."""
    libc = glibc()
    if libc is not None:
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


class HeapKeeper:
    """Hands freed heap back to the system once the process has grown `growth_mb` past its size
    after the last hand-back. Decoding a huge image leaves hundreds of MB in glibc's free lists,
    which malloc_trim returns; but trimming after every batch also returns the pages the model's
    next run allocates again, and their page faults slowed MobileNetV2 runs by about a quarter."""

    def __init__(self, growth_mb: float = 64.0) -> None:
        self.growth_mb = growth_mb
        self.settled_mb = 0.0  # resident size right after the last trim (0: none yet)

    def resident_mb_after_batch(self) -> float:
        """The process's resident size in MB, after a trim where it has grown past the allowance."""
        resident = resident_mb()
        if resident > self.settled_mb + self.growth_mb:
            trim_heap()
            resident = self.settled_mb = resident_mb()
        return resident


_statm: tuple[int, int] | None = None  # (pid, descriptor of its /proc/self/statm)


def resident_mb() -> float:
    """This process's resident size, read after every batch: from a descriptor kept open, as
    opening the file took several times as long as reading it in a process that runs a model."""
    global _statm
    try:
        if _statm is None or _statm[0] != os.getpid():  # /proc/self is resolved when opened: not across a fork
            _statm = (os.getpid(), os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC))
        pages = int(os.pread(_statm[1], 128, 0).split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def trim_heap() -> None:
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


_libc: Any = None


def glibc() -> Any:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim  # noqa: B018 - musl and others have none
        except (OSError, AttributeError):
            _libc = False
    return _libc or None


class PredictorProcess:
    """Parent-side handle of one child predictor. One batch at a time (the pool ensures it)."""

    def __init__(self, backend_spec: BackendSpec, handler_spec: HandlerSpec | None, name: str,
                 max_rss_mb: float = float("inf")) -> None:
        self._args = (backend_spec, handler_spec)
        self._name = name
        self.max_rss_mb = max_rss_mb  # resident size after a batch above which the process is replaced
        self._process: Any = None
        self._conn: Connection | None = None
        self.input_name = ""
        self.backend_description: dict[str, Any] = {}
        self.restarts = 0
        self.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive() and self._conn is not None

    def start(self) -> None:
        """Start the child and wait until its predictor is built; raises what the child reported."""
        context = process_context()
        parent_conn, child_conn = context.Pipe(duplex=True)
        process = context.Process(target=serve_predictor, args=(child_conn, *self._args), daemon=True,
                                  name=f"predictor {self._name}")
        process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        try:
            if not parent_conn.poll(START_TIMEOUT_S):
                raise PredictorCrashedError(f"the predictor process did not start in {START_TIMEOUT_S:.0f} s")
            header = self._read_header()
            if not header.get("ok"):
                raise RuntimeError(header.get("error", "the predictor process failed to start"))
        except BaseException:
            self.kill()
            raise
        self.input_name = header["input_name"]
        self.backend_description = header["description"]

    def restart(self) -> None:
        self.kill()
        self.restarts += 1
        log.warning("restarting the predictor process for %s (restart %d)", self._name, self.restarts)
        self.start()

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        """Blocking: float32 (N, C, H, W) -> float32 (N, K)."""
        self._ensure_started()
        self._send_message({"op": "run", "shape": list(batch.shape), "solo": solo}, [float32_bytes(batch)])
        return self._receive_outputs(self._read_header())

    async def classify_async(self, inputs: list[Input], solo: bool = False) -> Classified:
        """Encoded images (decoded and preprocessed in the child) or model-ready arrays, one run."""
        if not self.alive():
            await asyncio.to_thread(self._ensure_started)
        items, payload = encode_items(inputs)
        self._send_message({"op": "classify", "items": items, "solo": solo}, payload)
        await self._wait_for_reply()
        header = self._read_header()
        outputs = self._receive_outputs(header)
        classified = decode_reply(header, outputs, self._receive_bytes() if header.get("explained") else b"")
        if header.get("rss_mb", 0) > self.max_rss_mb:
            # A batch of huge images left more behind than trimming gave back: start afresh
            # (on the next batch, off the event loop).
            log.warning("recycling the predictor process for %s: %.0f MB resident after a batch, the limit is %d",
                        self._name, header["rss_mb"], self.max_rss_mb)
            self.kill()
        return classified

    async def _wait_for_reply(self) -> None:
        assert self._conn is not None
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self._conn.fileno()
        def on_readable() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await readable
        except BaseException:
            self.kill()  # cancelled mid-run: the reply would arrive out of step with the next batch
            raise
        finally:
            loop.remove_reader(fd)
            # uvloop makes a watched descriptor non-blocking; the reads below expect whole messages.
            if self._conn is not None:
                os.set_blocking(fd, True)

    def _ensure_started(self) -> None:
        if not self.alive():
            self.restart()

    def _send_message(self, header: dict[str, Any], payload: list[Buffer]) -> None:
        assert self._conn is not None
        try:
            send_messages(self._conn, [[json.dumps(header).encode()], payload])
        except OSError as exc:
            self.kill()
            raise PredictorCrashedError(f"the predictor process is gone: {exc}") from exc

    def _receive_outputs(self, header: dict[str, Any]) -> np.ndarray:
        if not header.get("ok"):
            raise RuntimeError(header.get("error", "inference failed"))
        return np.frombuffer(self._receive_bytes(), dtype=np.float32).reshape(header["shape"])

    def _receive_bytes(self) -> bytes:
        assert self._conn is not None
        try:
            return self._conn.recv_bytes()
        except (EOFError, OSError) as exc:
            self.kill()
            raise PredictorCrashedError("the predictor process died while sending its result") from exc

    def _read_header(self) -> dict[str, Any]:
        assert self._conn is not None
        try:
            return json.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as exc:
            code = self._process.exitcode if self._process is not None else None
            self.kill()
            raise PredictorCrashedError(f"the predictor process died (exit code {code})") from exc

    def kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(STOP_TIMEOUT_S)
            self._process = None

    def stop(self) -> None:
        """Ask the child to exit; kill it if it does not."""
        if self._conn is not None and self.alive():
            try:
                send_header(self._conn, {"op": "stop"})
                self._process.join(STOP_TIMEOUT_S)
            except OSError:
                pass
        self.kill()


class ProcessPool:
    """Predictor processes for one model version. `run` borrows one for one batch."""

    side_by_side = True
    inline = False  # never: keeping inference off the event loop is the point

    def __init__(self, backend_spec: BackendSpec, handler_spec: HandlerSpec | None, size: int, name: str,
                 max_rss_mb: float = float("inf")) -> None:
        self._args = (backend_spec, handler_spec)
        self._name = name
        self._max_rss_mb = max_rss_mb
        self._processes: list[PredictorProcess] = []
        self._lender: Lender[PredictorProcess] = Lender([])
        try:
            self.grow(max(1, size))
        except BaseException:
            self.close()
            raise
        self.input_name = self._processes[0].input_name

    @property
    def size(self) -> int:
        return len(self._processes)

    @property
    def backend_description(self) -> dict[str, Any]:
        return self._processes[0].backend_description

    @property
    def processes(self) -> tuple[PredictorProcess, ...]:
        return tuple(self._processes)

    def grow(self, size: int) -> None:
        while len(self._processes) < size:
            process = PredictorProcess(*self._args, f"{self._name}#{len(self._processes)}", self._max_rss_mb)
            self._processes.append(process)
            self._lender.add(process)

    @property
    def restarts(self) -> int:
        return sum(process.restarts for process in self._processes)

    def run(self, batch: np.ndarray, solo: bool = False) -> np.ndarray:
        with self._lender.borrow() as process:
            return process.run(batch, solo)

    def run_each(self, batch: np.ndarray, solo: bool = False, start: int = 0) -> list[np.ndarray]:
        """Run the batch once in every process from `start` on, one after another (warm-up, before
        any request): `run` lends the same idle process each time."""
        return [process.run(batch, solo) for process in self._processes[start:]]

    async def classify_async(self, inputs: list[Input], solo: bool = False) -> Classified:
        """Callers (one batcher's workers) never outnumber the processes; should they ever, this
        raises PoolBusyError instead of blocking the event loop."""
        with self._lender.borrow(wait=False) as process:
            return await process.classify_async(inputs, solo)

    def describe(self) -> dict[str, Any]:
        return {"isolation": "process", "predictors": self.size, "predictor_restarts": self.restarts,
                "inference_on_event_loop": False}

    def close(self) -> None:
        for process in self._processes:
            process.stop()

    def kill(self) -> None:
        for process in self._processes:
            process.kill()
