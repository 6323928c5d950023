"""Run an app with uvicorn in this process: loopback by default, graceful shutdown on SIGTERM/SIGINT.

uvicorn stops accepting connections on SIGTERM/SIGINT, lets requests in flight finish (up to
``graceful_s``, the drain window: ``mrl serve --drain-seconds``), answers those still running at its
end with a JSON 503 (``code: shutting_down``, see :mod:`mrl.serve.middleware`), then runs the app's
shutdown, which drains the batch queues without waiting for a batch still computing, and exits.
SIGHUP is the app's: it reloads the index (see :mod:`mrl.serve.app`).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from mrl.errors import MRLError

log = logging.getLogger("mrl.serve")


def check_bind(host: str, port: int) -> None:
    """Refuse ports outside 0..65535 and warn (one line) when binding beyond loopback."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise MRLError(f"--port must be in 0..65535, got {port!r}.")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("binding %s: the server is reachable from other machines; set --api-key (or MRL_API_KEY).", host)


def run(app: Any, *, host: str = "127.0.0.1", port: int = 8000, graceful_s: float = 30.0, log_level: str = "info", access_log: bool = False) -> None:
    """Serve ``app`` until SIGTERM/SIGINT; ``graceful_s``: the drain window for requests in flight."""
    import uvicorn

    check_bind(host, port)
    if isinstance(graceful_s, bool) or not isinstance(graceful_s, (int, float)) or not 0 <= graceful_s <= 3600:
        raise MRLError(f"--drain-seconds must be in [0, 3600], got {graceful_s!r}.")
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log, timeout_graceful_shutdown=graceful_s,
                            lifespan="on", server_header=False, limit_concurrency=None)
    uvicorn.Server(config).run()
