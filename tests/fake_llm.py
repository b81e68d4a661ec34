"""A local OpenAI-compatible chat-completions server: the one thing the robot tests fake is the
LLM vendor. It speaks the real wire format (``POST /v1/chat/completions``, server-sent events when
``stream`` is true) and behaves according to the requested model:

- ``good``: streams :data:`GOOD_ANSWER` in a few chunks, slowly enough to be seen streaming;
- ``unknown``: replies that the sources do not cover the question (``[[UNKNOWN]]``);
- ``broken``: HTTP 500;
- ``slow``: waits :data:`SLOW_S` seconds before answering.

Every request body is kept in ``requests`` for assertions on the prompt.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port

#: the port the fake listens on, the same for every instance of a run: workers are started with
#: ``WEIYU_OUTBOUND_ALLOW=127.0.0.1:<port>`` so the outbound guard lets them reach it
PORT = free_port()
GOOD_ANSWER = "You can ask for a refund under My orders: pick the order, then Request refund [1]."
SLOW_S = 5.0


class FakeLlm:
    def __init__(self, port: int = PORT) -> None:
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(body)
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                model = body.get("model")
                if model == "broken":
                    self.send_response(500)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "upstream exploded"}}')
                    return
                if model == "slow":
                    time.sleep(SLOW_S)
                text = "[[UNKNOWN]]" if model == "unknown" else GOOD_ANSWER
                if not body.get("stream"):
                    self._json(_completion(model, text))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                words = text.split(" ")
                chunks = [" ".join(words[i : i + 3]) + " " for i in range(0, len(words), 3)]
                chunks[-1] = chunks[-1].rstrip()
                try:
                    for chunk in chunks:
                        self._event(_chunk(model, chunk))
                        time.sleep(0.15)
                    self._event(_chunk(model, None, finish="stop"))
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _event(self, payload: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                self.wfile.flush()

            def _json(self, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeLlm:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _chunk(model: str, content: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {"role": "assistant", "content": content} if content is not None else {}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
