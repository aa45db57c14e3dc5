"""The HTTP API served: `ApiServer`, a WSGI server thread the desktop app embeds, and `serve`, the headless
loop of `image-search serve`."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server, select_address_family

from core.api.app import create_app
from core.api.context import EXTENSION
from core.api.errors import error_response
from core.api.security import is_loopback
from core.config import Settings
from core.model import WeightsError

if TYPE_CHECKING:
    from core.engine import Engine
from core.jobs import queue_for

log = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The API server cannot start: the address is taken or not ours, or exposing it needs a token."""


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (the desktop app embeds the server); errors are still logged."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def check_exposure(settings: Settings) -> None:
    """Binding beyond loopback exposes the index and every indexed file: only with a token.

    Raises ServerStartError when `settings.api_host` is not loopback and no token is set."""
    if not is_loopback(settings.api_host) and not settings.api_token:
        raise ServerStartError(
            f"refusing to listen on {settings.api_host!r} without a token: anyone on the network could read "
            "every indexed image. Set api_token (--token or IMAGE_SEARCH_API_TOKEN), or bind 127.0.0.1."
        )


def with_token_file(settings: Settings) -> Settings:
    """`settings` with api_token read from the file named by api_token_file (e.g. a Docker secret,
    /run/secrets/...) when api_token itself is unset. Surrounding whitespace (the file's newline) is dropped.

    Raises ServerStartError when the file cannot be read or holds no token."""
    path = settings.api_token_file
    if settings.api_token or not path:
        return settings
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerStartError(f"cannot read the token file {path}: {exc}") from exc
    if not token:
        raise ServerStartError(f"the token file {path} is empty")
    return settings.replace(api_token=token)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one); ServerStartError saying why not."""
    family = select_address_family(host, port)
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = " (another program uses that port; choose another with --port)" if exc.errno == 98 else ""
        raise ServerStartError(f"cannot listen on {host}:{port}: {reason}{hint}") from exc


class ApiServer:
    """The API served from a daemon thread: start() returns once listening, stop() returns within a second."""

    def __init__(self, engine: Engine | None, settings: Settings, *, log_requests: bool = False,
                 app: Flask | None = None):
        """The API over `engine`, or `app` instead (serve's answer when no engine can start).

        Raises ServerStartError when the bind needs a token it lacks or the token file cannot be read."""
        settings = with_token_file(settings)
        check_exposure(settings)
        self.engine = engine
        self.settings = settings
        self.app = app if app is not None else create_app(engine, settings)
        self._handler = WSGIRequestHandler if log_requests else _QuietHandler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve; raises ServerStartError when the port is taken or already served by this one."""
        if self._server is not None:
            raise ServerStartError("the API server is already running")
        host, port = self.settings.api_host, self.settings.api_port
        # Bound here rather than by make_server, which prints and calls sys.exit() when the port is taken.
        sock = bind_socket(host, port)
        try:
            self._server = make_server(host, port, self.app, threaded=True, request_handler=self._handler,
                                       fd=sock.fileno())
        finally:
            sock.close()  # make_server holds its own duplicate of the descriptor
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="api-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and finish the requests in flight (2 s at most). The job queue belongs to the engine
        (core.jobs.queue_for), which the desktop keeps while it restarts the server on another port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=2)
        server.server_close()

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when api_port is 0); RuntimeError when not running."""
        if self._server is None:
            raise RuntimeError("the API server is not running")
        return self._server.port

    @property
    def url(self) -> str:
        """http://host:port of the running server (a wildcard bind gives the loopback address)."""
        host = self.settings.api_host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"  # a wildcard bind is reachable locally at loopback
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def warm_up(self) -> None:
        """Build the model now (seconds), so that the first search does not wait for it. A failure is logged
        once and /api/health answers 503 with it until the model is built."""
        context = self.app.extensions[EXTENSION]
        try:
            self.engine.extractor()
        except Exception as exc:  # noqa: BLE001 - whatever stops the model is reported, never raised here
            context.model_error = f"the model could not be loaded: {exc}"
            log.error("image-search: %s", context.model_error)
        else:
            context.model_error = None

    def __enter__(self) -> ApiServer:
        """Start; the server stops when the block ends."""
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        """Stop."""
        self.stop()


def unavailable_app(reason: str) -> Flask:
    """What `serve` answers when the engine cannot start: 503 with `reason` on every route (so /api/health
    makes a container unhealthy with the reason, where exiting would make a restart policy loop)."""
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    def unavailable(path: str) -> Response:
        return error_response(503, "Service Unavailable", reason)

    return app


def serve(settings: Settings) -> int:
    """The headless server of `image-search serve`: runs until Ctrl-C or SIGTERM; 0 then, 1 if it cannot start.

    When the weights cannot be had it still listens: one clear error line, then 503 with the reason on every
    route until stopped (and 1 then)."""
    from core.engine import Engine

    try:
        settings = with_token_file(settings)
        check_exposure(settings)
    except ServerStartError as exc:
        print(f"image-search: error: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine: Engine | None = None
    try:
        engine = Engine(settings)
        server = ApiServer(engine, settings, log_requests=True)
    except WeightsError as exc:
        print(f"image-search: error: {exc} (answering 503 until restarted)", file=sys.stderr, flush=True)
        server = ApiServer(None, settings, log_requests=True, app=unavailable_app(str(exc)))
    try:
        server.start()
    except ServerStartError as exc:
        if engine is not None:
            engine.close()
        print(f"image-search: error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    count = f"{engine.store.count()} images" if engine is not None else "unavailable"
    print(f"Image search API and web page at {server.url}/ ({count}; Ctrl-C to stop)", flush=True)
    if engine is not None:
        threading.Thread(target=server.warm_up, name="model-warm-up", daemon=True).start()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if engine is not None:
            queue_for(engine).shutdown(timeout=2)  # a running index job stops at its next file
            engine.close()
    print("stopped", flush=True)
    return 0 if engine is not None else 1
