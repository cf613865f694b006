"""Running uvicorn for `polyroute serve`: logging, multi-process metrics, and a supervisor that
passes SIGHUP on to the workers.

uvicorn's own supervisor answers SIGHUP by replacing every worker process (a rolling restart):
in-memory state (breakers, limits, a loaded in-house model) is lost and each worker waits up to
the graceful timeout for its streams. polyroute's supervisor instead forwards SIGHUP to each
worker that is serving, and each worker reloads its configuration in place (ops/reload.py).
SIGUSR2 keeps uvicorn's rolling restart available (for a code upgrade).
"""

from __future__ import annotations

import atexit
import glob
import inspect
import logging
import os
import shutil
import signal
import tempfile

from polyroute.ops.logs import log_config
from polyroute.ops.metrics import MULTIPROC_ENV
from polyroute.ops.reload import SUPERVISOR_ENV

APP = "polyroute.server.factory:create_app"
log = logging.getLogger("polyroute.serve")


def prepare_multiprocess_metrics() -> str:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers (set before any of them imports
    prometheus_client). A directory given in the environment is emptied of old value files."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for f in glob.glob(os.path.join(given, "*.db")):
            os.remove(f)
        return given
    path = tempfile.mkdtemp(prefix="polyroute-metrics-")
    os.environ[MULTIPROC_ENV] = path
    atexit.register(shutil.rmtree, path, True)
    return path


def run_server(
    *, host: str, port: int, workers: int, log_level: str, log_format: str, graceful_timeout: int = 30,
    keep_alive: float = 75.0,
) -> int:
    import uvicorn

    from polyroute.server.protocol import CoalescingHttpToolsProtocol

    if workers > 1:
        prepare_multiprocess_metrics()
    kwargs = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=log_config(log_format, log_level),
        # Open streams get this long to finish after SIGTERM (docs/operations.md#shutdown).
        timeout_graceful_shutdown=graceful_timeout,
        timeout_keep_alive=keep_alive,
    )
    if workers <= 1:
        # SIGHUP's default action ends the process: ignore it until the app's handler is in place.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        uvicorn.run(APP, **kwargs)  # type: ignore[arg-type]
        return 0
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        def handle_hup(self) -> None:
            log.info("SIGHUP: asking every serving worker to reload the configuration")
            for p in self.processes:
                pid = p.pid
                ready = getattr(p, "is_ready", None)
                # A worker still starting reads the file as it starts; SIGHUP would end it.
                if pid is None or (ready is not None and not ready(timeout=1)):
                    continue
                try:
                    os.kill(pid, signal.SIGHUP)
                except OSError:
                    pass

        def handle_usr2(self) -> None:
            log.info("SIGUSR2: replacing the workers one by one")
            self.restart_all()

    config = uvicorn.Config(APP, **kwargs)  # type: ignore[arg-type]
    sock = config.bind_socket()
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    params = inspect.signature(Multiprocess.__init__).parameters
    if "target" in params:  # uvicorn < 0.34
        server = uvicorn.Server(config)
        sup = Supervisor(config, target=server.run, sockets=[sock])  # type: ignore[call-arg]
    else:
        sup = Supervisor(config, sockets=[sock])
    sup.run()
    # A worker that could not start (e.g. its database unreachable) makes the supervisor stop:
    # exit with that worker's status, as a single worker does, so that a service manager sees a
    # failure and restarts the gateway (systemd Restart=on-failure), instead of a clean exit 0.
    if any(getattr(p, "exitcode", None) == STARTUP_FAILURE for p in sup.processes):
        return STARTUP_FAILURE
    return 0
