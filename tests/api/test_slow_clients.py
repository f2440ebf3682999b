"""Clients that send slowly or too much, against a real server on 127.0.0.1 (raw sockets, and
the everyday HTTP clients for the 413)."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import serve_in_thread

LIMIT = 1024 * 1024
OVERSIZED = json.dumps({"inputs": [[0.0] * 64] * 160_000}).encode()  # about 20 MB of JSON
PREDICT = "/v1/models/digits-mlp/predict"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_in_thread(
        max_body_bytes=LIMIT, header_timeout_s=0.5, body_timeout_s=0.5, request_timeout_s=2.0
    ) as url:
        yield url


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def test_a_head_that_never_ends_is_closed(server_url: str) -> None:
    with _connect(server_url) as sock:
        sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        received, waited = _read_until_closed(sock)
    assert received == b"" and waited < 3.0


def test_a_head_trickled_byte_by_byte_is_closed(server_url: str) -> None:
    """130 bytes at one per 50 ms: never idle, but 6.5 s for a head allowed 0.5 s."""
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    started = time.monotonic()
    closed = False
    with _connect(server_url) as sock:
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
        if not closed:
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
    assert closed and time.monotonic() - started < 3.0


def test_headers_then_no_body_get_408_and_a_close(server_url: str) -> None:
    with _connect(server_url) as sock:
        sock.sendall(
            b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"inp'
        )
        received, waited = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ") and b"body_timeout_s" in received
    assert waited < 3.0


def test_a_trickled_body_is_cut_at_the_request_deadline(server_url: str) -> None:
    body = json.dumps({"inputs": [[0.0] * 64]}).encode()
    started = time.monotonic()
    with _connect(server_url) as sock:
        sock.sendall(
            b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        received = b""
        for byte in body:  # one byte every 0.2 s: never idle 0.5 s, but slower than 2 s
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                received += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if received:
                break
        more, _ = _read_until_closed(sock)
    answer = received + more
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout_s" in answer
    assert time.monotonic() - started < 4.0


def test_keep_alive_still_serves_several_requests(server_url: str) -> None:
    with httpx.Client(base_url=server_url) as client:
        for _ in range(3):
            assert client.get("/v2/health/live").status_code == 200
            time.sleep(0.2)


def _expect_413(status: int, text: str) -> None:
    assert status == 413
    assert json.loads(text)["error"] == (
        f"body: larger than the limit of {LIMIT} bytes (max_body_bytes)"
    )


def test_urllib_reads_the_413_of_a_20_mb_body(server_url: str) -> None:
    request = urllib.request.Request(
        server_url + PREDICT, data=OVERSIZED, headers={"content-type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    _expect_413(refused.value.code, refused.value.read().decode())


def test_httpx_reads_the_413_of_a_20_mb_body(server_url: str) -> None:
    response = httpx.post(
        server_url + PREDICT,
        content=OVERSIZED,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    _expect_413(response.status_code, response.text)


def test_httpx_reads_the_413_of_a_chunked_20_mb_body(server_url: str) -> None:
    def pieces() -> Iterator[bytes]:
        for start in range(0, len(OVERSIZED), 1 << 20):
            yield OVERSIZED[start : start + (1 << 20)]

    response = httpx.post(
        server_url + PREDICT,
        content=pieces(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    _expect_413(response.status_code, response.text)


def test_requests_reads_the_413_of_a_20_mb_body(server_url: str) -> None:
    requests = pytest.importorskip("requests")
    response = requests.post(
        server_url + PREDICT,
        data=OVERSIZED,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    _expect_413(response.status_code, response.text)
