"""/metrics over HTTP(S): prometheus_client's exposition behind a bounded, hardened server.

The exposition itself is prometheus_client's: ``choose_encoder`` picks the text format
0.0.4 or OpenMetrics from the Accept header, and ``name[]`` restricts the output to the
named families. What prometheus_client's own servers lack, and a training process needs,
is here:

- gzip only when the scraper accepts it (``gzip;q=0`` is a refusal);
- HEAD answered like GET without the body; other methods 405;
- a render error answers 500 and is logged, instead of resetting the connection;
- a listen backlog of 128, a bounded pool of worker threads, a cap on open
  connections (the rest are closed at once) and an idle timeout, so slow or idle
  clients cannot exhaust the training process's threads or file descriptors;
- TLS and basic authentication from an exporter-toolkit web config file (webconfig.py);
  the TLS handshake runs on a worker thread, never on the accepting one.

Usage::

    from prometheus_client import CollectorRegistry
    server = MetricsServer(CollectorRegistry(), host="127.0.0.1", port=0)   # 0 = any free port
    print(server.url); server.stop()
"""

from __future__ import annotations

import gzip
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from .webconfig import WebConfig

log = logging.getLogger("rewardscope")

DEFAULT_PORT = 19464
DEFAULT_HOST = "127.0.0.1"
LANDING_PAGE = b"rewardscope exporter: metrics at /metrics\n"


def gzip_accepted(header: str | None) -> bool:
    """True when Accept-Encoding allows gzip with a non-zero quality."""
    for part in (header or "").split(","):
        coding, *params = [p.strip() for p in part.split(";")]
        if coding.lower() not in ("gzip", "*"):
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        return quality > 0
    return False


def metrics_app(registry: CollectorRegistry, web_config: WebConfig | None = None) -> Callable[..., Iterable[bytes]]:
    """The WSGI application serving ``registry`` on /metrics; see the module docstring."""
    logged_errors: set[type] = set()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if web_config is not None and not web_config.authorized(environ.get("HTTP_AUTHORIZATION")):
            return _plain(start_response, "401 Unauthorized", b"unauthorized\n", method,
                          [("WWW-Authenticate", 'Basic realm="rewardscope"')])
        if path not in ("/metrics", "/"):
            return _plain(start_response, "404 Not Found", b"only /metrics is served here\n", method)
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", b"use GET or HEAD\n", method, [("Allow", "GET, HEAD")])
        if path == "/":
            return _plain(start_response, "200 OK", LANDING_PAGE, method)
        try:
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
            body = encoder(registry.restricted_registry(names) if names else registry)
        except Exception as error:  # a scrape must get an answer, and the cause must reach the log
            if type(error) not in logged_errors:
                logged_errors.add(type(error))
                log.exception("rendering /metrics failed; answering 500")
            return _plain(start_response, "500 Internal Server Error", f"rendering /metrics failed: {error}\n".encode(), method)
        headers = [("Content-Type", content_type), ("Vary", "Accept-Encoding")]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING")):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [] if method == "HEAD" else [body]

    return app


def _plain(start_response: Callable[..., Any], status: str, body: bytes, method: str,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))] + (extra or []))
    return [] if method == "HEAD" else [body]


class _Handler(WSGIRequestHandler):
    timeout = 10.0  # replaced per server: the idle timeout of a connection

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics server: " + format, *args)


class _BoundedServer(WSGIServer):
    """A WSGI server that hands each connection to a bounded pool of workers."""

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, handler: type[_Handler], *,
                 backlog: int, workers: int, max_connections: int, ssl_context: ssl.SSLContext | None) -> None:
        self._idle_timeout = handler.timeout
        self.address_family = family
        self.request_queue_size = backlog
        self.allow_reuse_address = True
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rewardscope-metrics")
        self._open = threading.BoundedSemaphore(max_connections)
        self._ssl_context = ssl_context
        super().__init__(address, handler)  # binds; on failure it calls server_close, which needs the pool

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._open.acquire(blocking=False):  # over the cap: close at once rather than queue without bound
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            if self._ssl_context is not None:
                request.settimeout(self._idle_timeout)
                request = self._ssl_context.wrap_socket(request, server_side=True)
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError) as error:
            log.debug("metrics server: connection from %s ended: %s", client_address, error)
        finally:
            self.shutdown_request(request)
            self._open.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class MetricsServer:
    """Serves a registry on /metrics from a background thread; ``stop()`` closes the socket."""

    def __init__(self, registry: CollectorRegistry, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 web_config: WebConfig | None = None, workers: int = 8, max_connections: int = 256,
                 idle_timeout_seconds: float = 10.0, backlog: int = 128) -> None:
        handler = type("MetricsHandler", (_Handler,), {"timeout": idle_timeout_seconds})
        ssl_context = web_config.ssl_context() if web_config is not None else None
        try:
            family, address = _best_family(host, port)
            self._server = _BoundedServer((address, port), family, handler, backlog=backlog, workers=workers,
                                          max_connections=max_connections, ssl_context=ssl_context)
        except OSError as error:
            raise OSError(error.errno, f"cannot serve /metrics on {host}:{port}: {error.strerror or error}; "
                                       f"pass another port (0 picks a free one)") from error
        self._server.set_app(metrics_app(registry, web_config))
        self._thread = threading.Thread(target=self._server.serve_forever, name="rewardscope-metrics", daemon=True)
        self._thread.start()
        self.host = host
        self.port = int(self._server.server_address[1])
        self.scheme = "https" if ssl_context is not None else "http"
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/metrics"

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)


def _best_family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])
