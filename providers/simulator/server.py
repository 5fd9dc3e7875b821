"""Run the provider simulator under uvicorn, in a background thread (tests) or in the foreground.

    server = SimulatorServer()          # host="127.0.0.1", port=0: a free port
    server.start()                      # returns once the socket listens
    server.url                          # "http://127.0.0.1:PORT"
    server.stop()

The socket is bound here (before uvicorn starts), so ``.port`` is known at once and port=0 works.
uvicorn runs with a subclass of its HTTP protocol that exposes the connection's transport to the app
(``scope["extensions"]["simulator.transport"]``), which is how ``drop``/``stream_cut`` really drop
the connection (see app.py).
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import TRANSPORT_EXTENSION, SimulatorApp

try:  # faster parser when installed; same app/transport attributes as the h11 protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _BaseProtocol  # type: ignore
    import httptools  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    _BaseProtocol = H11Protocol


class TransportExposingProtocol(_BaseProtocol):  # type: ignore[misc, valid-type]
    """uvicorn HTTP protocol that hands the asyncio transport to the ASGI app via scope extensions."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        inner = self.app

        async def app(scope, receive, send):
            scope.setdefault("extensions", {})[TRANSPORT_EXTENSION] = self.transport
            await inner(scope, receive, send)

        self.app = app

    def connection_made(self, transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        super().connection_made(transport)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it Nagle + delayed ACKs add ~40 ms to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


class SimulatorServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        app: SimulatorApp | None = None,
        log_level: str = "warning",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.app = app if app is not None else SimulatorApp()
        self.log_level = log_level
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("SimulatorServer is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def anthropic_base_url(self) -> str:
        return f"{self.url}/anthropic"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/openai/v1"

    @property
    def openrouter_base_url(self) -> str:
        return f"{self.url}/openrouter/api/v1"

    def bind(self) -> "SimulatorServer":
        """Bind and listen (sets ``.port``); start()/serve_forever() do it if not done yet."""
        if self._sock is None:
            self._sock = _bind(self.host, self.requested_port)
            self.port = self._sock.getsockname()[1]
        return self

    def _prepare(self) -> uvicorn.Server:
        self.bind()
        config = uvicorn.Config(
            self.app,
            http=TransportExposingProtocol,
            lifespan="off",
            access_log=False,
            log_level=self.log_level,
            backlog=4096,
            timeout_keep_alive=65,
            timeout_graceful_shutdown=2,
            server_header=False,
            date_header=False,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def start(self, timeout: float = 10.0) -> "SimulatorServer":
        if self._thread is not None:
            return self
        server = self._prepare()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._sock]}, name=f"provider-simulator:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError("provider simulator failed to start")
            if time.monotonic() > deadline:
                raise RuntimeError("provider simulator did not start in time")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def serve_forever(self) -> None:
        """Run in the foreground (main thread: Ctrl-C / SIGTERM stop it)."""
        server = self._prepare()
        try:
            server.run(sockets=[self._sock])
        finally:
            self.stop()

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


