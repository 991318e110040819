"""A small OpenAI-compatible chat-completions server for tests.

It listens on 127.0.0.1 on a free port, answers ``POST /v1/chat/completions`` with scripted replies in
order, and records every request it received (path, headers, JSON body).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "Reply", "answer", "completion", "http_error", "refusal"]


@dataclass
class Reply:
    """One scripted HTTP reply.

    Attributes:
        status: HTTP status code.
        body: A dict (sent as JSON) or a string (sent as is).
        delay_s: Seconds to wait before replying.
        headers: Extra response headers.
    """

    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def completion(
    content: str | None, *, refusal: str | None = None, finish_reason: str = "stop", model: str = "fake-model"
) -> dict[str, Any]:
    """A chat-completion response body with one choice."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def answer(content: str | dict[str, Any], **kwargs: Any) -> Reply:
    """A 200 reply whose message content is ``content`` (a dict is sent as its JSON text)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return Reply(body=completion(text, **kwargs))


def refusal(text: str) -> Reply:
    """A 200 reply in which the model refuses."""
    return Reply(body=completion(None, refusal=text))


def http_error(status: int, message: str, **kwargs: Any) -> Reply:
    """An error reply shaped like OpenAI's."""
    body = {"error": {"message": message, "type": "fake_error", "code": None}}
    return Reply(status=status, body=body, **kwargs)


class FakeOpenAIServer:
    """The server; use as a context manager or call :meth:`start` and :meth:`stop`.

    Attributes:
        requests: Every request received: ``{"path", "headers", "body"}``.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``."""
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies, answered in order."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> FakeOpenAIServer:
        """Start serving in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except json.JSONDecodeError:
                    body = raw.decode(errors="replace")
                with server._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    server.requests.append({"path": self.path, "headers": headers, "body": body})
                    reply = server._replies.popleft() if server._replies else None
                if self.path != "/v1/chat/completions":
                    reply = http_error(404, f"no route {self.path}")
                elif reply is None:
                    reply = http_error(500, "fake server: no scripted reply left")
                if reply.delay_s and server._stopping.wait(reply.delay_s):
                    return
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = payload.encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
