"""Attacks on a real server, each with what must hold: no hang, no restart, no 5xx for a client's
mistake, memory bounded. Two servers on a copy of the LeNet model are shared by the tests (limits
set low, so that every attack is short): `guarded` takes the load; `fragile` serves broken model
versions beside a good one and recycles its predictor after every batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import MODELS_DIR, Server, draw_digit_one, encode
from tests.integration.app.test_faults import ONE_PREDICTOR, child_pids, predictor_pids

LENET = "/v1/models/mnist-lenet"
TOKEN = "attack-test-token"
BODY_TIMEOUT = 2.0
HEADER_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("attack-models")
    shutil.copytree(MODELS_DIR / "mnist-lenet", models / "mnist-lenet")
    return models


@pytest.fixture(scope="module")
def guarded(server_factory: Callable[..., Server], repository: Path) -> Server:
    return server_factory({
        **ONE_PREDICTOR, "APP_MODEL_DIR": str(repository), "APP_ADMIN_TOKEN": TOKEN,
        "APP_REQUEST_TIMEOUT_MS": "3000", "APP_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "APP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT), "APP_MAX_QUEUE_IMAGES": "16",
        "APP_MAX_BODY_BYTES_IN_FLIGHT": str(40 * 2**20), "APP_MAX_JSON_BYTES": str(32 * 2**20),
        "APP_MAX_REQUEST_PIXELS": str(400_000_000), "APP_MAX_BATCH_SIZE": "16",
    })


def digit_png() -> bytes:
    return encode(draw_digit_one(), "PNG")


def huge_png(side: int) -> bytes:
    """A side x side PNG of white paper with a dark stroke: tiny to send, costly to decode."""
    image = Image.new("L", (side, side), 240)
    image.paste(20, (side // 2 - side // 40, side // 5, side // 2 + side // 40, side - side // 5))
    return encode(image, "PNG")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class HealthWatch:
    """Polls /healthz in a thread; the slowest answer (seconds) says whether the event loop stalled."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.slowest = 0.0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.failures += not ok
                self.slowest = max(self.slowest, time.perf_counter() - started)
                time.sleep(0.05)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read off a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def request_bytes(method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
    return head_bytes(method, path, len(body), content_type) + body


def head_bytes(method: str, path: str, length: int, content_type: str = "application/json") -> bytes:
    """A request's line and headers, declaring a body of `length` bytes (sent or not)."""
    return (f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


# --- slow clients, big headers, idle connections ------------------------------------------------


def test_slow_uploads_hold_no_queue_room_and_time_out(guarded: Server) -> None:
    """30 uploads that declare 100 KB and send a byte every half second: real requests to the same
    model are answered meanwhile (the old server gave them all 503), and the slow ones get 408."""
    slow = [connect(guarded) for _ in range(30)]
    for sock in slow:
        sock.sendall(head_bytes("POST", f"{LENET}/predict", 100_000, "image/png"))

    def trickle() -> None:
        for _ in range(3):
            for sock in slow:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass
            time.sleep(0.5)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    with guarded.client() as client:
        for _ in range(5):
            response = client.post(f"{LENET}/predict", files={"file": ("one.png", digit_png(), "image/png")})
            assert response.status_code == 200, response.text
    trickler.join()
    statuses = []
    for sock in slow:
        sock.settimeout(BODY_TIMEOUT + 10)
        statuses.append(read_response(sock)[0])
        sock.close()
    assert statuses == [408] * len(slow)


def test_oversized_header_is_refused_without_stalling_the_server(guarded: Server) -> None:
    with HealthWatch(guarded) as watch:
        sock = connect(guarded)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: ")
            for _ in range(160):  # 10 MB of one header value, as fast as the socket takes it
                sock.sendall(b"a" * 65536)
        except OSError:
            pass  # the server hung up on us: what it should do
        try:
            status = read_response(sock)[0]
        except (ConnectionError, OSError):
            status = 0  # reset before the answer could be read: the refusal is checked in the log
        sock.close()
    assert status in (431, 0)
    assert watch.slowest < 1.0 and watch.failures == 0
    with guarded.client() as client:
        response = client.get("/healthz", headers={"X-Big": "a" * 100_000})
        assert response.status_code == 431 and response.json()["error"]["code"] == "header_too_large"


def test_connections_over_the_cap_are_refused_in_the_error_shape(server_factory: Callable[..., Server],
                                                                  repository: Path) -> None:
    """APP_MAX_CONNECTIONS open: the next connection gets a 503 in the error shape and is closed;
    once they are gone, the server answers again."""
    capped = server_factory({**ONE_PREDICTOR, "APP_MODEL_DIR": str(repository), "APP_MAX_CONNECTIONS": "3"})
    held = [connect(capped) for _ in range(3)]
    time.sleep(0.3)
    extra = connect(capped)
    status, _, body = read_response(extra)
    assert status == 503 and json.loads(body)["error"]["code"] == "overloaded"
    assert extra.recv(1) == b""  # closed by the server
    for sock in [extra, *held]:
        sock.close()
    time.sleep(0.3)
    with capped.client() as client:
        assert client.get("/healthz").status_code == 200

def test_idle_and_slow_header_connections_are_closed(guarded: Server) -> None:
    idle = [connect(guarded) for _ in range(20)]
    loris = connect(guarded)
    loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
    time.sleep(HEADER_TIMEOUT + 1.5)
    for sock in idle:
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed by the server
        sock.close()
    loris.settimeout(5)
    status, headers, body = read_response(loris)
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"
    loris.close()


def test_bodies_in_flight_share_a_budget(guarded: Server) -> None:
    """Two declared bodies larger than the budget together: the second is refused before it is
    read, with Retry-After; once the first is gone, there is room again."""
    first = connect(guarded)
    first.sendall(head_bytes("POST", f"{LENET}/predict", 79 * 2**19, "image/png"))  # 39.5 of the 40 MB
    time.sleep(0.3)
    with guarded.client() as client:
        response = client.post(f"{LENET}/predict", content=b"\0" * 2**20, headers={"Content-Type": "image/png"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert response.json()["error"]["code"] == "overloaded"
        first.close()
        time.sleep(0.5)
        response = client.post(f"{LENET}/predict", content=digit_png(), headers={"Content-Type": "image/png"})
        assert response.status_code == 200


def test_client_that_hangs_up_mid_upload_is_counted_as_499_not_500(guarded: Server) -> None:
    for _ in range(3):
        sock = connect(guarded)
        sock.sendall(head_bytes("POST", f"{LENET}/predict", 50_000, "image/png") + b"\x89PNG" * 100)
        time.sleep(0.2)
        sock.close()
    time.sleep(0.5)
    with guarded.client() as client:
        metrics = client.get("/metrics").text
    assert 'status="499"' in metrics
    assert not any('status="500"' in line and "predict" in line for line in metrics.splitlines())
    assert "Traceback" not in guarded.log()


def test_many_large_json_bodies_at_once_leave_the_server_near_its_size(guarded: Server) -> None:
    """16 clients each sending a 27 MB JSON batch body at once: what is over the in-flight budget
    waits with a 503, what is in is parsed off the loop; the server's memory stays bounded while
    they run and returns near where it started."""
    body = json.dumps({"images": ["!" * (1400 * 1024)] * 20}).encode()  # 20 strings that are not base64
    start = rss_mb(guarded.process.pid)
    peak = start

    def post(_: int) -> int:
        with guarded.client() as client:
            return client.post(f"{LENET}/predict/batch", content=body,
                               headers={"Content-Type": "application/json"}).status_code

    with HealthWatch(guarded) as watch, ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(post, i) for i in range(16)]
        while not all(f.done() for f in futures):
            peak = max(peak, rss_mb(guarded.process.pid))
            time.sleep(0.05)
    statuses = [f.result() for f in futures]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses
    assert watch.failures == 0 and watch.slowest < 1.0
    time.sleep(1)
    after = rss_mb(guarded.process.pid)
    assert peak - start < 300, f"{start:.0f} -> peak {peak:.0f} MB"
    assert after - start < 60, f"{start:.0f} -> {after:.0f} MB after"


# --- bodies the event loop must not parse, and client mistakes ------------------------------------


def test_large_json_tensor_is_parsed_off_the_event_loop(guarded: Server) -> None:
    """~20 MB of FP32 numbers as JSON (json.loads alone takes about a second): /healthz keeps
    answering while it is parsed, and the request gets its 4xx (too many inputs)."""
    rows = 4000
    body = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [rows, 1, 28, 28],
                                   "data": [0.123] * (rows * 784)}]}).encode()
    assert 15 * 2**20 < len(body) < 32 * 2**20
    with HealthWatch(guarded) as watch, guarded.client() as client:
        response = client.post("/v2/models/mnist-lenet/infer", content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "too_many_files"
    assert watch.slowest < 0.5 and watch.failures == 0


def test_json_part_over_its_limit_is_413_before_parsing(guarded: Server) -> None:
    body = b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [' + b"0.5," * (9 * 2**20) \
        + b"0.5]}]}"
    with guarded.client() as client:
        response = client.post("/v2/models/mnist-lenet/infer", content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "binary" in response.json()["error"]


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(("path", "body"), [
    (f"{LENET}/predict", b'{"image": ' + DEEP + b"}"),
    (f"{LENET}/predict/batch", b'{"images": ' + DEEP + b"}"),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": ' + DEEP + b"}"),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [-1]}]}'),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1.5]}]}'),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [null]}]}'),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [[300]]}]}'),
    ("/v2/models/mnist-lenet/infer",
     b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [10000000000000]}]}'),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": 5}]}'),
    ("/v2/models/mnist-lenet/infer", b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}'),
    ("/v2/models/mnist-lenet/infer",
     b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"], "parameters": "x"}]}'),
    ("/v2/models/mnist-lenet/infer",
     b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": ["a"]}]}'),
    ("/v2/models/mnist-lenet/infer",
     b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [true, 1, 28, 28], "data": [1]}]}'),
])
def test_client_mistakes_are_4xx_and_the_connection_stays_usable(guarded: Server, path: str, body: bytes) -> None:
    sock = connect(guarded)
    try:
        sock.sendall(request_bytes("POST", path, body))
        status, headers, payload = read_response(sock)
        assert 400 <= status < 500, payload[:300]
        assert "request_id" in json.loads(payload) or "request_id" in json.loads(payload).get("error", {})
        sock.sendall(request_bytes("GET", "/healthz"))  # the same connection, kept alive
        assert read_response(sock)[0] == 200
    finally:
        sock.close()


def test_65_and_66_files_get_the_same_answer(guarded: Server) -> None:
    png = digit_png()
    with guarded.client() as client:
        for count in (65, 66, 80):
            response = client.post(f"{LENET}/predict/batch",
                                   files=[("files", (f"{i}.png", png, "image/png")) for i in range(count)])
            assert response.status_code == 413, (count, response.text)
            assert response.json()["error"]["code"] == "too_many_files"


def test_pages_carry_security_headers(guarded: Server) -> None:
    with guarded.client() as client:
        for path in ("/", "/docs"):
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert 'href="/"' in client.get("/docs").text  # a way back to the page


# --- decoding costs: huge images, timed-out batches ----------------------------------------------


def test_explain_decodes_in_the_predictor_process_not_the_server(guarded: Server) -> None:
    """Eight concurrent explain=input uploads of a 16-megapixel PNG (60 KB each): the server
    process grows by a few MB, not by gigabytes; the predictor gives its memory back after."""
    data = huge_png(4000)
    [predictor] = predictor_pids(guarded)
    before, predictor_before = rss_mb(guarded.process.pid), rss_mb(predictor)
    peak = before

    def post(_: int) -> int:
        with guarded.client() as client:
            response = client.post(f"{LENET}/predict?explain=input", files={"file": ("big.png", data, "image/png")})
            return response.status_code

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, i) for i in range(8)]
        while not all(f.done() for f in futures):
            peak = max(peak, rss_mb(guarded.process.pid))
            time.sleep(0.05)
    statuses = [f.result() for f in futures]  # one predictor, a 3 s timeout: the last ones may be 504
    assert set(statuses) <= {200, 504} and 200 in statuses
    assert peak - before < 150, f"server grew from {before:.0f} to {peak:.0f} MB"
    [predictor] = predictor_pids(guarded)  # (recycled if it kept too much)
    assert rss_mb(predictor) - predictor_before < 300


def test_request_pixel_budget_refuses_a_costly_batch_before_decoding(guarded: Server) -> None:
    data = huge_png(5000)  # 25 megapixels each: 17 of them are over the 400-megapixel budget
    with guarded.client() as client:
        started = time.perf_counter()
        response = client.post(f"{LENET}/predict/batch", files=[("files", (f"{i}.png", data, "image/png"))
                                                                 for i in range(17)])
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        assert time.perf_counter() - started < 5


def test_timed_out_batch_stops_occupying_the_predictor(guarded: Server) -> None:
    """A batch of huge images that cannot finish within the request timeout: its client gets 504
    at the deadline, and the model answers the next request at once, instead of after the whole
    batch has been decoded (half a minute or more). The predictor is stopped while it decodes, so
    that the batch cannot finish in time however fast this machine decodes."""
    data = huge_png(5000)
    [predictor] = predictor_pids(guarded)
    with guarded.client() as client, ThreadPoolExecutor(1) as pool:
        started = time.perf_counter()
        batch = pool.submit(client.post, f"{LENET}/predict/batch",
                            files=[("files", (f"{i}.png", data, "image/png")) for i in range(14)])
        time.sleep(0.5)  # the images are sent (half a megabyte) and being decoded
        os.kill(predictor, signal.SIGSTOP)
        response = batch.result()
        assert response.status_code == 504, response.text[:300]
        assert time.perf_counter() - started < 8
        started = time.perf_counter()
        response = client.post(f"{LENET}/predict", files={"file": ("one.png", digit_png(), "image/png")})
        assert response.status_code == 200
        assert time.perf_counter() - started < 8
    assert predictor not in predictor_pids(guarded)  # the stopped process was replaced, not left behind


# --- reloads under load ----------------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in child_pids(stack.pop()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def touch(repository: Path) -> None:
    manifest = repository / "mnist-lenet" / "1" / "manifest.json"
    manifest.write_text(manifest.read_text() + "\n")


def reload(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})


def test_reload_while_a_request_is_stuck_and_another_is_half_sent(guarded: Server, repository: Path) -> None:
    """The sequence that froze the server for good: the predictor stopped, request A queued,
    request B's body half sent; a reload swaps in a new version while the old one waits for A;
    then B's body completes. B must be answered (503, or 200 from the new version), the server
    must keep answering, and the old version's processes must go."""
    [old] = predictor_pids(guarded)
    png = digit_png()
    os.kill(old, signal.SIGSTOP)
    try:
        with guarded.client() as client, HealthWatch(guarded) as watch, ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(client.post, f"{LENET}/predict", files={"file": ("a.png", png, "image/png")})
            time.sleep(0.3)
            boundary = "x-boundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"b.png\"\r\n"
                    f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
            half = connect(guarded)
            half.sendall(request_bytes("POST", f"{LENET}/predict/batch", body,
                                       f"multipart/form-data; boundary={boundary}")[: -len(body) // 2])
            touch(repository)
            with guarded.client() as admin:
                assert reload(admin).json()["loaded"] == ["mnist-lenet/1"]
            half.sendall(request_bytes("POST", f"{LENET}/predict/batch", body,
                                       f"multipart/form-data; boundary={boundary}")[-len(body) // 2:])
            half.settimeout(10)
            status = read_response(half)[0]
            half.close()
            assert status in (200, 503)
            assert stuck.result(timeout=10).status_code in (500, 503, 504)
        assert watch.failures == 0 and watch.slowest < 2
    finally:
        if Path(f"/proc/{old}").exists():
            os.kill(old, signal.SIGCONT)
    deadline = time.monotonic() + 15
    while Path(f"/proc/{old}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{old}").exists(), "the retired version's predictor process was left behind"


def test_many_reloads_under_mixed_load_never_hang(guarded: Server, repository: Path) -> None:
    """Single and batch clients throughout ten reloads: every answer is 200 or 503 (never another
    5xx), /healthz never stalls, and afterwards the server runs as many processes as before."""
    before = descendants(guarded.process.pid)
    png = digit_png()
    statuses: list[int] = []
    stop = threading.Event()

    def load(batch: bool) -> None:
        with guarded.client() as client:
            while not stop.is_set():
                if batch:
                    response = client.post(f"{LENET}/predict/batch",
                                           files=[("files", (f"{i}.png", png, "image/png")) for i in range(4)])
                else:
                    response = client.post(f"{LENET}/predict", files={"file": ("one.png", png, "image/png")})
                statuses.append(response.status_code)

    with HealthWatch(guarded) as watch, ThreadPoolExecutor(10) as pool:
        clients = [pool.submit(load, i >= 8) for i in range(10)]
        with guarded.client() as admin:
            for _ in range(10):
                touch(repository)
                assert reload(admin).status_code == 200
                time.sleep(0.3)
        stop.set()
        for future in clients:
            future.result(timeout=30)
    assert set(statuses) <= {200, 503} and statuses.count(200) > 20
    assert watch.failures == 0 and watch.slowest < 2
    deadline = time.monotonic() + 20
    while len(descendants(guarded.process.pid)) > len(before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(descendants(guarded.process.pid)) <= len(before)


# --- a server of its own: empty admin token, bad manifests, recycling, bounded shutdown ---------


def broken_versions(repository: Path) -> None:
    """Versions whose preprocessing would be costly or wrong: each must fail to load, with a reason."""
    for version, steps in ((2, [{"op": "resize", "size": [20000, 20000]}]),
                           (3, [{"op": "resize", "size": [28, 28]}, {"op": "normalize", "mean": [float("nan")],
                                                                      "std": [1.0]}]),
                           (4, [{"op": "resize", "size": [32, 32]}])):
        target = repository / "mnist-lenet" / str(version)
        shutil.copytree(repository / "mnist-lenet" / "1", target)
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["version"] = version
        manifest["preprocessing"]["steps"] = steps
        (target / "manifest.json").write_text(json.dumps(manifest))
    (repository / "mnist-lenet" / "model.json").write_text('{"default_version": 1}')


@pytest.fixture(scope="module")
def fragile(server_factory: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Server:
    models = tmp_path_factory.mktemp("fragile-models")
    shutil.copytree(MODELS_DIR / "mnist-lenet", models / "mnist-lenet")
    broken_versions(models)
    return server_factory({**ONE_PREDICTOR, "APP_MODEL_DIR": str(models), "APP_ADMIN_TOKEN": "",
                           "APP_PREDICTOR_MAX_MEMORY_MB": "64"})  # below any Paddle process at rest


def test_empty_admin_token_keeps_the_admin_routes_closed(fragile: Server) -> None:
    """APP_ADMIN_TOKEN="" (what compose gives for a missing variable) is no token: an empty
    password does not open the admin routes."""
    for authorization in (b"Bearer ", b"Bearer", b""):
        sock = connect(fragile)
        sock.sendall(b"POST /v1/admin/reload HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n"
                     b"Authorization: " + authorization + b"\r\n\r\n")
        assert read_response(sock)[0] == 404
        sock.close()
    assert "admin routes are disabled" in fragile.log()


def test_bad_preprocessing_fails_its_version_at_load_with_a_short_reason(fragile: Server) -> None:
    with fragile.client() as client:
        [model] = client.get("/v1/models").json()["models"]
        errors = {v["version"]: v["error"] or "" for v in model["versions"]}
        assert model["status"] == "ready" and errors[1] == ""
        assert "4096" in errors[2] and "finite" in errors[3] and "(1, 32, 32)" in errors[4]
        text = json.dumps(model) + client.get("/readyz").text
        assert str(MODELS_DIR.parent) not in text and "/tmp/" not in text
        response = client.post(f"{LENET}/predict", files={"file": ("one.png", digit_png(), "image/png")})
        assert response.status_code == 200


def test_predictor_over_its_memory_limit_is_recycled_and_keeps_serving(fragile: Server) -> None:
    """With a limit below what a predictor process holds, every batch recycles it: the restarts
    are counted and every answer is still right."""
    with fragile.client() as client:
        for _ in range(3):
            response = client.post(f"{LENET}/predict", files={"file": ("one.png", digit_png(), "image/png")})
            assert response.status_code == 200 and response.json()["predictions"][0]["label"] == "1"
        assert client.get(LENET).json()["runtime"]["predictor_restarts"] >= 2
    assert "recycling the predictor process" in fragile.log()


def test_shutdown_is_bounded_with_a_stuck_predictor(server_factory: Callable[..., Server], repository: Path) -> None:
    server = server_factory({**ONE_PREDICTOR, "APP_MODEL_DIR": str(repository), "APP_SHUTDOWN_SECONDS": "2",
                             "APP_DRAIN_SECONDS": "0"})
    [predictor] = predictor_pids(server)
    os.kill(predictor, signal.SIGSTOP)
    with ThreadPoolExecutor(1) as pool:
        with server.client() as client:
            pending = pool.submit(client.post, f"{LENET}/predict",
                                  files={"file": ("one.png", digit_png(), "image/png")})
            time.sleep(0.5)
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=30)
            assert time.monotonic() - started < 20
            try:
                pending.result(timeout=5)
            except httpx.HTTPError:
                pass
    assert not Path(f"/proc/{predictor}").exists() or "zombie" in Path(f"/proc/{predictor}/status").read_text()
