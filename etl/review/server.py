"""Serving the rating app with uvicorn: in the foreground (the CLI) or in a background thread (tests, the demo,
scripted raters).

The socket is bound before uvicorn starts, so a port already in use is a one-line error, port 0 picks a free
port, and the printed URL always has the port actually used.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from etl.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A random access token (like Jupyter's): required on every request when not on loopback."""
    return secrets.token_urlsafe(24)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a taken port or unknown address is a ConfigError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "--host/--port") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(app: Any, sock: socket.socket, log_level: str) -> Any:
    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="off", timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def serve_forever(app: Any, sock: socket.socket, log_level: str = "warning") -> None:
    """Serve until Ctrl-C (uvicorn handles the signals)."""
    _server(app, sock, log_level).run(sockets=[sock])


@contextmanager
def running_server(app: Any, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` in a background thread; yields its base URL (``http://127.0.0.1:PORT``)."""
    sock = bind(host, port)
    server = _server(app, sock, log_level)
    server.install_signal_handlers = lambda: None  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError("the review server did not start", f"{host}:{sock.getsockname()[1]}")
        time.sleep(0.01)
    try:
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
