"""The pipe's framing between the server and a predictor process."""

from __future__ import annotations

import multiprocessing
import os
import threading

import numpy as np

from app.inference.pools.wire import encode_items, send_messages, split_payload


def test_wire_send_messages_frames_as_recv_bytes_reads_them() -> None:
    reader, writer = multiprocessing.Pipe(duplex=True)
    large = os.urandom(3 * 2**20)  # past the socket's buffer: written in several writes, read whole
    messages = [[b'{"op": "classify"}'], [b"abc", memoryview(b"def")], [], [large[:100], large[100:]]]
    sender = threading.Thread(target=send_messages, args=(writer, messages))
    sender.start()
    received = [reader.recv_bytes() for _ in messages]
    sender.join()
    assert received == [b'{"op": "classify"}', b"abcdef", b"", large]


def test_wire_encode_items_round_trips_images_and_arrays() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    items, parts = encode_items([b"\xff\xd8jpeg", array, b"png"])
    inputs = split_payload(items, b"".join(parts))
    assert inputs[0] == b"\xff\xd8jpeg" and inputs[2] == b"png"
    np.testing.assert_array_equal(inputs[1], array)
