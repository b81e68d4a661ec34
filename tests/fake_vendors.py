"""Local servers speaking the subsets of the vendor APIs the messaging channels use — the only
thing the channel tests fake is the vendor, at the HTTP boundary (kefu.channels).

- Telegram Bot API: ``/bot<token>/sendMessage|sendPhoto|sendDocument|getFile|getUpdates`` and
  ``/file/bot<token>/<path>``;
- WeChat Official Account API: ``/cgi-bin/token``, ``/cgi-bin/message/custom/send``,
  ``/cgi-bin/media/upload``, ``/cgi-bin/media/get``, ``/cgi-bin/user/info``;
- a tenant's own system behind an API channel: ``/receiver`` (the callback URL, answered 200
  ``{"ok": true}``; the test checks the signature itself from the raw body and headers) and
  ``/files/<name>`` (a file an inbound message links to: the PNG).

Every call is kept in ``calls`` as a :class:`Call`. Knobs: ``fail_next`` (answer that many sends
with HTTP 500), ``refuse`` (a permanent refusal: Telegram 403 "bot was blocked by the user",
WeChat errcode 45015, the receiver 410), ``garble_next`` (answer that many Telegram sends "ok"
with a ``result`` no client expects: a string), ``expire_token()`` (the WeChat token in use becomes
invalid: 40001), ``hold_files`` (a :class:`threading.Event`: file downloads wait until it is set —
a slow vendor).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers import free_port

#: the port of the fakes, the same for the whole run: workers are started with
#: ``WEIYU_OUTBOUND_ALLOW=127.0.0.1:<port>`` so the outbound guard lets them reach it
PORT = free_port()
#: a 1 x 1 PNG, what the fake serves for a photo or an image media id
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
#: the start of an AMR voice clip (WeChat's voice format)
AMR = b"#!AMR\n" + bytes(64)
SEND_METHODS = {"sendMessage", "sendPhoto", "sendDocument"}


@dataclass
class Call:
    """One request: ``path`` without the query, ``query`` (first values), ``json`` body,
    ``form`` fields and ``files`` ``{field: (file name, bytes)}`` of a multipart body."""

    method: str
    path: str
    query: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    form: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename:
            files[name] = (filename, payload)
        else:
            form[name] = payload.decode()
    return form, files


class FakeVendors:
    """Both fakes on one local HTTP server (they never share a path)."""

    def __init__(self, port: int = PORT) -> None:
        self.calls: list[Call] = []
        self.fail_next = 0
        self.garble_next = 0
        self.refuse = False
        self.updates: list[dict[str, Any]] = []
        self.nickname = "小明"
        self.hold_files: threading.Event | None = None
        self._tokens = itertools.count(1)
        self.valid_tokens: set[str] = set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _read(self) -> Call:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                call = Call(
                    method=self.command,
                    path=parts.path,
                    query=query,
                    headers=dict(self.headers.items()),
                    raw=body,
                )
                content_type = self.headers.get("Content-Type", "")
                if content_type.startswith("multipart/"):
                    call.form, call.files = _multipart(content_type, body)
                elif body:
                    call.json = json.loads(body)
                with fake._lock:
                    fake.calls.append(call)
                return call

            def _send(self, status: int, body: Any, content_type: str = "application/json"):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._route(self._read())

            def do_POST(self) -> None:
                self._route(self._read())

            def _route(self, call: Call) -> None:
                if call.path.startswith("/cgi-bin/"):
                    self._wechat(call)
                elif call.path.startswith(("/file/bot", "/files/")):
                    if fake.hold_files is not None:
                        fake.hold_files.wait(timeout=120)
                    self._send(200, PNG, "image/png")
                elif call.path == "/receiver":
                    if fake._take_failure():
                        self._send(500, {"error": "boom"})
                    elif fake.refuse:
                        self._send(410, {"error": "this contact is gone"})
                    else:
                        self._send(200, {"ok": True})
                elif call.path.startswith("/bot"):
                    self._telegram(call)
                else:
                    self._send(404, {"error": "no such path"})

            def _telegram(self, call: Call) -> None:
                method = call.path.rsplit("/", 1)[-1]
                if method in SEND_METHODS:
                    if fake._take_failure():
                        self._send(500, {"ok": False, "error_code": 500, "description": "boom"})
                        return
                    if fake.refuse:
                        self._send(
                            403,
                            {
                                "ok": False,
                                "error_code": 403,
                                "description": "Forbidden: bot was blocked by the user",
                            },
                        )
                        return
                    if fake._take_garbled():
                        self._send(200, {"ok": True, "result": "sent, more or less"})
                        return
                    self._send(200, {"ok": True, "result": {"message_id": len(fake.calls)}})
                elif method == "getFile":
                    file_id = (call.json or {}).get("file_id")
                    self._send(200, {"ok": True, "result": {"file_id": file_id,
                                                            "file_path": f"photos/{file_id}.png"}})  # fmt: skip
                elif method == "getUpdates":
                    offset = int((call.json or {}).get("offset") or 0)
                    result = [u for u in fake.updates if u["update_id"] >= offset]
                    self._send(200, {"ok": True, "result": result})
                else:
                    self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})

            def _wechat(self, call: Call) -> None:
                if call.path == "/cgi-bin/token":
                    token = f"token-{next(fake._tokens)}"
                    fake.valid_tokens.add(token)
                    self._send(200, {"access_token": token, "expires_in": 7200})
                    return
                if call.query.get("access_token") not in fake.valid_tokens:
                    self._send(200, {"errcode": 40001, "errmsg": "invalid credential"})
                    return
                if call.path == "/cgi-bin/message/custom/send":
                    if fake._take_failure():
                        self._send(502, b"bad gateway", "text/plain")
                    elif fake.refuse:
                        self._send(200, {"errcode": 45015, "errmsg": "response out of time limit"})
                    else:
                        self._send(200, {"errcode": 0, "errmsg": "ok"})
                elif call.path == "/cgi-bin/media/upload":
                    self._send(200, {"type": "image", "media_id": "MEDIA-UP-1", "created_at": 1})
                elif call.path == "/cgi-bin/media/get":
                    media = call.query.get("media_id", "")
                    if media.startswith("VOICE"):
                        self._send(200, AMR, "audio/amr")
                    else:
                        self._send(200, PNG, "image/jpeg")
                elif call.path == "/cgi-bin/user/info":
                    self._send(200, {"subscribe": 1, "openid": call.query.get("openid"),
                                     "nickname": fake.nickname})  # fmt: skip
                else:
                    self._send(200, {"errcode": 40004, "errmsg": "invalid path"})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take_garbled(self) -> bool:
        with self._lock:
            if self.garble_next > 0:
                self.garble_next -= 1
                return True
            return False

    def _take_failure(self) -> bool:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return True
            return False

    def expire_token(self) -> None:
        """Every token handed out so far stops working (WeChat answers 40001)."""
        self.valid_tokens.clear()

    def sent(self, path_end: str) -> list[Call]:
        """The calls whose path ends with ``path_end`` (``sendMessage``, ``custom/send``…)."""
        return [c for c in list(self.calls) if c.path.endswith(path_end)]

    def start(self) -> FakeVendors:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
