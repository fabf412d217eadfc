"""Test servers on 127.0.0.1: a range-capable HTTP file server with a request
log and fault modes, and moto's S3 server.

Python's ``http.server`` ignores ``Range``; :class:`RangeServer` serves
``Range: bytes=a-b`` with 206 responses, answers HEAD with Content-Length,
ETag and Last-Modified, and records every request (method, path, range,
status, bytes sent).  Fault modes: ``fail_first`` (503 for the first N
requests), ``drop_first`` (close the first N connections without an answer),
``status`` (a fixed status for some paths: 403, 404...); ``faults_on="GET"``
counts only GETs (GDAL's reads) for the first two.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int
    sent: int  # body bytes


class RangeServer:
    """Serve the files of ``root`` at ``http://127.0.0.1:PORT/NAME``; use as a context manager."""

    def __init__(self, root: str | os.PathLike, fail_first: int = 0, drop_first: int = 0,
                 status: dict[str, int] | None = None, faults_on: str | None = None) -> None:
        self.root = Path(root)
        self.fail_first, self.drop_first = fail_first, drop_first
        self.faults_on = faults_on  # count only requests of this method ("GET": GDAL's reads) for the faults
        self.status = dict(status or {})
        self.log: list[Request] = []
        self._n = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server API
                server._serve(self, head=True)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server._serve(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def _record(self, h, status: int, sent: int) -> None:
        with self._lock:
            self.log.append(Request(h.command, h.path, h.headers.get("Range"), status, sent))

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        with self._lock:
            if self.faults_on is None or h.command == self.faults_on:
                self._n += 1
                n = self._n
            else:
                n = 1 << 30
        if n <= self.drop_first:
            self._record(h, 0, 0)
            # reset the connection: no answer at all
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if n <= self.fail_first:
            self._send_status(h, 503)
            return
        name = h.path.split("?", 1)[0].lstrip("/")
        if name in self.status:
            self._send_status(h, self.status[name])
            return
        f = self.root / name
        if not name or not f.is_file():
            self._send_status(h, 404)
            return
        data = f.read_bytes()
        st = f.stat()
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": '"' + hashlib.md5(data).hexdigest() + '"',
            "Last-Modified": email.utils.formatdate(int(st.st_mtime), usegmt=True),
            "Content-Type": "application/octet-stream",
        }
        status, body = 200, data
        rng = h.headers.get("Range")
        if rng:
            m = _RANGE.match(rng.strip())
            if not m:
                self._send_status(h, 416)
                return
            a, b = m.groups()
            if a == "":
                start, end = max(0, len(data) - int(b)), len(data) - 1
            else:
                start, end = int(a), min(len(data) - 1, int(b) if b else len(data) - 1)
            if start >= len(data):
                self._send_status(h, 416)
                return
            status, body = 206, data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)
        self._record(h, status, 0 if head else len(body))

    def _send_status(self, h: BaseHTTPRequestHandler, status: int) -> None:
        body = f"status {status}\n".encode()
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Type", "text/plain")
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
        self._record(h, status, 0)

    # --- what the log says ---
    def gets(self, name: str | None = None) -> list[Request]:
        return [r for r in self.log if r.method == "GET" and (name is None or r.path.lstrip("/") == name)]

    def bytes_sent(self, name: str | None = None) -> int:
        return sum(r.sent for r in self.gets(name))


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class S3Server:
    """moto's S3 server on 127.0.0.1 (a random port), with a bucket helper."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> S3Server:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop()

    @property
    def endpoint(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"{host}:{port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def put(self, bucket: str, key: str, data: bytes) -> None:
        c = self.client()
        try:
            c.create_bucket(Bucket=bucket)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        c.put_object(Bucket=bucket, Key=key, Body=data)
