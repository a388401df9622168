"""EmulatorServer: run the emulator over real HTTP in a background thread (tests, demos)."""

from __future__ import annotations

import threading

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .config import EmulatorConfig


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-") -> None:
        pass


class EmulatorServer:
    """Context manager: threaded werkzeug server on a free loopback port.

    with EmulatorServer() as emu:
        requests.get(emu.base_url + "/_admin/health")
    """

    def __init__(self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 quiet: bool = True) -> None:
        self.config = config or EmulatorConfig()
        self.app = create_app(self.config)
        self.state = self.app.extensions["token_desk_emulator"]
        handler = _QuietHandler if quiet else None
        server = make_server(host, port, self.app, threaded=True, request_handler=handler)
        assert isinstance(server, ThreadedWSGIServer)  # threaded=True
        server.daemon_threads = True
        self._server = server
        self.host, self.port = host, self._server.server_port
        self.base_url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"emulator-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
