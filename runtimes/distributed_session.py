"""A Ray run as the command line shows it: the cluster joined or started for one run
(:func:`run_on_ray`), Ray's own console reports kept off the terminal (:func:`quiet_ray`), and a
failed run as one line (:func:`ray_error_message`)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Iterator

import ray

from uner.errors import DistributedError, UnerError

logger = logging.getLogger(__name__)


def ray_error_message(error: BaseException) -> str:
    """One line for a Ray error: the message of our own error inside it when there is one (a
    worker could not load the model), else the last line of the innermost error."""
    chain = _chain(error)
    for current in chain:
        if isinstance(current, UnerError):
            return str(current)
        # a worker's error often arrives only as the text of its traceback
        found = re.findall(r"^uner\.errors\.\w+: (.+)$", str(current), flags=re.MULTILINE)
        if found:
            return found[-1]
    innermost = chain[-1]
    lines = [line.strip() for line in str(innermost).splitlines() if line.strip()]
    return f"the Ray run failed: {lines[-1] if lines else type(innermost).__name__}"


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its causes, outermost first."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = getattr(error, "cause", None) or error.__cause__
    return chain


@contextlib.contextmanager
def quiet_ray() -> Iterator[None]:
    """Ray's own reports off the console for ``uner extract --ray``, which shows one bar of
    documents, its own warnings, and a failed run as one ``Error:`` line (:class:`DistributedError`):
    Ray Data's per-operator bars, execution plan and INFO lines (printed every few seconds when
    stderr is not a terminal), a local cluster's start-up note, and the reports of failed worker
    tasks that Ray prints to stdout, traceback included, of which one line each is logged.
    Ray's log files under ``/tmp/ray/session_*/logs`` keep everything."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console; its file handler is not one
            handler.setLevel(logging.CRITICAL)
    # "Token authentication is enabled for this Ray cluster": a note, on every local start
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(_RayReports()):
        yield


class _RayReports(io.TextIOBase):
    """Where the driver's stdout goes during a run: Ray prints there, from a thread of its own,
    what its workers report (``(raylet) Task … failed … will be retried. Error: Traceback …``).
    Each report's first line is logged, up to its error; the traceback is left out."""

    _REPORT = re.compile(r"^(?:\x1b\[[0-9;]*m)?\((?:raylet|[^)]*pid=)[^)]*\)")
    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self) -> None:
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if self._REPORT.match(line):
                logger.info("ray: %s", self._ANSI.sub("", line).split(" Error: ", 1)[0])
        return len(text)


_AUTH_HINT = (
    "; if the cluster uses token authentication (Ray's default), set RAY_AUTH_MODE=token here, with its "
    "token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
)


def run_on_ray(address: str | None, run, *args, **kwargs):
    """``run(*args, **kwargs)`` on the Ray cluster at ``address``. ``None`` is Ray's own choice:
    ``$RAY_ADDRESS`` (set inside a Ray job), a cluster already running on this machine, else a
    local one on this machine's cores, started and stopped here."""
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            # Ray >= 2.5x starts clusters with token authentication; a client must opt in
            hint = "" if os.environ.get("RAY_AUTH_MODE") else _AUTH_HINT
            raise DistributedError(f"{exc}{hint}") from exc
    try:
        return run(*args, **kwargs)
    finally:
        if started_here:
            ray.shutdown()
