"""A catalogue of hostile and exotic input, each sent to a real server. Valid exotic images get a
prediction; everything else the documented 4xx in the common error shape. The server stays healthy."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Server, draw_digit_one, encode
from tests.integration.app.test_api import LENET, assert_error


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module", autouse=True)
def memory_before(server: Server) -> dict[str, float]:
    """The server's resident memory before the catalogue, after one warm request."""
    with server.client() as client:
        client.post(f"{LENET}/predict", files={"file": ("d.png", encode(draw_digit_one(), "PNG"))})
    return {"rss_mb": rss_mb(server.process.pid)}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb() -> bytes:
    """A ~100 KB PNG declaring 20000 x 20000 pixels (400 MB once decoded)."""
    size = 20_000
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
    raw = zlib.compressobj(9)
    row = b"\x00" + bytes(size)
    body = b"".join(raw.compress(row) for _ in range(200)) + raw.flush()
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def digit(mode: str = "L") -> Image.Image:
    return draw_digit_one(120).convert(mode)


def palette_with_transparency() -> bytes:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([255, 255, 255] + [0, 0, 0] * 255)
    pixels = np.zeros((64, 64), np.uint8)
    pixels[10:54, 30:34] = 1
    image.putdata(pixels.ravel().tolist())
    return encode(image, "PNG", transparency=0)


def sixteen_bit() -> bytes:
    pixels = (np.asarray(digit(), dtype=np.uint16) * 257).astype(np.uint16)
    return encode(Image.fromarray(pixels), "PNG")


def animated_gif() -> bytes:
    frames = [digit(), Image.new("L", (120, 120), 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def multipage_tiff() -> bytes:
    buffer = io.BytesIO()
    digit().save(buffer, "TIFF", save_all=True, append_images=[Image.new("L", (120, 120), 255)])
    return buffer.getvalue()


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated: rotate 270 to view
    return encode(digit("RGB").rotate(-90, expand=True), "JPEG", exif=exif.tobytes())


def iphone_heic() -> bytes:
    """HEIC as an iPhone's camera saves it, the turn to view it recorded in the file."""
    exif = Image.Exif()
    exif[0x0112] = 8
    return encode(digit("RGB").rotate(-90, expand=True), "HEIF", exif=exif.tobytes(), quality=85)


def zip_file() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("digit.png", encode(digit(), "PNG"))
    return buffer.getvalue()


VALID = {
    "png-grey": lambda: encode(digit(), "PNG"),
    "png-rgba": lambda: encode(digit("RGBA"), "PNG"),
    "png-palette-transparent": palette_with_transparency,
    "png-16-bit": sixteen_bit,
    "png-1-bit": lambda: encode(digit("1"), "PNG"),
    "jpeg-baseline": lambda: encode(digit("RGB"), "JPEG"),
    "jpeg-progressive": lambda: encode(digit("RGB"), "JPEG", progressive=True),
    "jpeg-cmyk": lambda: encode(digit("CMYK"), "JPEG"),
    "jpeg-greyscale": lambda: encode(digit(), "JPEG"),
    "jpeg-exif-rotated": exif_rotated_jpeg,
    "gif-animated": animated_gif,
    "tiff-multipage": multipage_tiff,
    "webp-lossless": lambda: encode(digit("RGB"), "WEBP", lossless=True),
    "heic-iphone-rotated": iphone_heic,
    "avif": lambda: encode(digit("RGB"), "AVIF"),
    "bmp": lambda: encode(digit("RGB"), "BMP"),
    "ppm": lambda: encode(digit("RGB"), "PPM"),
    "tiny-2x2": lambda: encode(Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8)), "PNG"),
    "wide-2000x20": lambda: encode(Image.fromarray(np.pad(np.full((20, 40), 255, np.uint8), ((0, 0), (980, 980)))),
                                   "PNG"),
}

INVALID = {
    "empty": (lambda: b"", 400),
    "random-bytes": (lambda: os.urandom(4096), 415),
    "text": (lambda: b"just some text\n" * 10, 415),
    "html": (lambda: b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", 415),
    "svg": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', 415),
    "pdf": (lambda: b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF", 415),
    "zip": (zip_file, 415),
    "eps": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", 415),
    "png-signature-only": (lambda: b"\x89PNG\r\n\x1a\n", 400),
    "png-truncated": (lambda: encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)),
                                     "PNG")[:300], 400),
    "jpeg-truncated": (lambda: encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3),
                                                                                          np.uint8)), "JPEG")[:400],
                       400),
    "gif-header-only": (lambda: b"GIF89a\x10\x00\x10\x00", 400),
    "heic-truncated": (lambda: iphone_heic()[:500], 400),
    "bmp-header-only": (lambda: b"BM" + bytes(10), 400),
    "png-bomb": (decompression_bomb, 413),
    "too-many-pixels-1-by-100000": (lambda: encode(Image.new("L", (100_000, 1)), "PNG"), 422),
    "blank-white": (lambda: encode(Image.new("L", (50, 50), 255), "PNG"), 422),
    "blank-black": (lambda: encode(Image.new("L", (50, 50), 0), "PNG"), 422),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_catalogue_valid_exotic_images_are_predicted(server: Server, name: str) -> None:
    with server.client() as client:
        response = client.post(f"{LENET}/predict", files={"file": (f"{name}.img", VALID[name](), "image/png")})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 5


NOT_A_DRAWN_ONE = {"tiny-2x2", "wide-2000x20"}


@pytest.mark.parametrize("name", sorted(set(VALID) - NOT_A_DRAWN_ONE))
def test_catalogue_valid_one_is_read_as_one(server: Server, name: str) -> None:
    with server.client() as client:
        body = client.post(f"{LENET}/predict", files={"file": ("one.img", VALID[name]())}).json()
    assert body["predictions"][0]["label"] == "1", body


@pytest.mark.parametrize("name", sorted(INVALID))
def test_catalogue_invalid_files_get_documented_4xx(server: Server, name: str) -> None:
    make, status = INVALID[name]
    with server.client() as client:
        response = client.post(f"{LENET}/predict", files={"file": (f"{name}.png", make(), "image/png")})
        assert_error(response, status)
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"content": b"raw bytes", "headers": {"Content-Type": "application/octet-stream"}}, 422),
        ({"content": b"", "headers": {}}, 422),
        ({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 422),
        ({"content": b"--\r\n\r\n--", "headers": {"Content-Type": "multipart/form-data"}}, 400),
        ({"json": {"file": "not here"}}, 422),
        ({"files": {"file": ("d.png", b"x")}, "data": {"unknown_field": "1"}}, 400),
    ],
    ids=["octet-stream-body", "no-body", "bad-boundary-body", "multipart-without-boundary", "json-body",
         "extra-field-with-bad-file"],
)
def test_catalogue_malformed_requests(server: Server, request_kwargs: dict, status: int) -> None:
    with server.client() as client:
        response = client.post(f"{LENET}/predict", **request_kwargs)
        assert 400 <= response.status_code < 500, response.text
        assert_error(response, response.status_code)
        assert client.get("/healthz").status_code == 200


def test_catalogue_extra_unknown_field_is_ignored(server: Server) -> None:
    with server.client() as client:
        response = client.post(f"{LENET}/predict", files={"file": ("d.png", VALID["png-grey"]())},
                               data={"comment": "hello"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd", "a\x00b.png", "x" * 5000 + ".png", "名前.png", "..\\..\\windows.png", ""],
    ids=["traversal", "nul", "very-long", "non-ascii", "backslashes", "empty"],
)
def test_catalogue_hostile_filenames_are_echoed_not_used(server: Server, filename: str) -> None:
    with server.client() as client:
        body = client.post(f"{LENET}/predict/batch", files=[("files", (filename, VALID["png-grey"]()))])
    if len(filename) > 1000:  # the multipart parser refuses headers this long: a clean 400
        assert_error(body, 400)
        return
    if not filename:  # a part without a file name is a plain form field, not a file
        assert_error(body, 422)
        return
    assert body.status_code == 200, body.text
    assert body.json()["results"][0]["predictions"]


def test_catalogue_non_utf8_filename(server: Server) -> None:
    data = VALID["png-grey"]()
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\xff\xfe\xfa.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--b--\r\n")
    with server.client() as client:
        response = client.post(f"{LENET}/predict", content=body,
                               headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code in (200, 400), response.text


def test_catalogue_duplicate_filenames_keep_order(server: Server) -> None:
    one, blank = VALID["png-grey"](), INVALID["blank-white"][0]()
    with server.client() as client:
        results = client.post(f"{LENET}/predict/batch", files=[("files", ("same.png", one)),
                                                               ("files", ("same.png", blank))]).json()["results"]
    assert results[0]["predictions"] and results[1]["error"]["code"] == "unusable_image"


def test_catalogue_zero_files_is_422(server: Server) -> None:
    with server.client() as client:
        assert_error(client.post(f"{LENET}/predict/batch", files=[("other", ("x", b"y"))]), 422)


@pytest.mark.parametrize("name", ["x" * 65, "..", "%2e%2e%2fmodels", "a/b", "MNIST-LENET", "mnist lenet"])
def test_catalogue_bad_model_names(server: Server, name: str) -> None:
    with server.client() as client:
        response = client.post(f"/v1/models/{name}/predict", files={"file": ("d.png", VALID["png-grey"]())})
    assert response.status_code in (404, 405, 422), response.text
    assert_error(response, response.status_code)


def test_catalogue_server_healthy_after_everything(server: Server, memory_before: dict[str, float]) -> None:
    after = rss_mb(server.process.pid)
    assert after <= memory_before["rss_mb"] * 1.25 + 20, (memory_before, after)
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
        assert client.post(f"{LENET}/predict", files={"file": ("d.png", VALID["png-grey"]())}).status_code == 200
    assert httpx.get(server.url + "/healthz").status_code == 200
