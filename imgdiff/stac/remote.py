"""Reading remote rasters and JSON over HTTP, with bounded retries and backoff.

Rasters are read by window through GDAL's ``/vsicurl/`` (HTTP range requests:
only the header and the tiles covering the window travel, never the whole file).
GDAL's own retries are switched off so that every retry is ours: bounded,
logged, and reported in the provenance of a fetch.
"""

from __future__ import annotations

import ctypes
import glob
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ..errors import ImgdiffError, InputError, NetworkError
from ..io.layout import one_line

log = logging.getLogger(__name__)
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

#: HTTP status codes worth retrying: request timeout, too many requests, server errors.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try a network operation.

    Attributes
    ----------
    attempts : int
        Total attempts (first try included), at least 1.
    backoff_s : float
        Wait before the second attempt, in seconds; doubled (``factor``) after each failure.
    factor : float
        Growth of the wait between attempts.
    max_backoff_s : float
        Upper bound of one wait, in seconds.
    timeout_s : int
        Most time one HTTP request of a remote raster (a range or header read by GDAL) may take in all,
        connect and transfer, in seconds (:func:`gdal_options`); for a request of JSON (requests), the most
        time to connect and each wait for a piece of its answer, its whole bounded by ``deadline_s`` alone.
        Either is capped at the time left before a deadline.
    deadline_s : float or None
        Most time one read of a remote raster (its header, or a window of it: one asset download) may
        take in all, retries and waits included, in seconds; most time one item search of a catalogue
        may take in all (its landing page and every page of items, retries and waits included: the time
        left is each request's bound, :func:`bounded_session`); and most time one HTTP request of other
        JSON (an item fetched by URL) may take from sending to its last byte. None: no bound on the whole.
    """

    attempts: int = 4
    backoff_s: float = 1.0
    factor: float = 2.0
    max_backoff_s: float = 30.0
    timeout_s: int = 30
    deadline_s: float | None = 300.0

    def delays(self) -> list[float]:
        """Waits between successive attempts, in seconds (``attempts - 1`` of them)."""
        return [min(self.max_backoff_s, self.backoff_s * self.factor**i) for i in range(max(0, self.attempts - 1))]


#: Four attempts, 1-2-4 s apart, 30 s per request, 300 s per raster read in all (and per item search, per
#: item's JSON).
DEFAULT_POLICY = RetryPolicy()


class Deadline:
    """A total time allowance started now, on the monotonic clock.

    Parameters
    ----------
    seconds : float or None
        The allowance; None: no deadline (:meth:`remaining` is infinite).
    clock : callable
        ``time.monotonic``; replaceable in tests.
    """

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = None if seconds is None else clock() + seconds

    def remaining(self) -> float:
        """Seconds left (0 once passed; infinite without a deadline)."""
        return math.inf if self._end is None else max(0.0, self._end - self._clock())

    def timeout(self, timeout_s: float) -> int:
        """A request timeout no longer than the time left (whole seconds, at least 1: curl reads 0 as none)."""
        return max(1, math.ceil(min(timeout_s, self.remaining())))


class DeadlinePassed(Exception):
    """The deadline passed while an operation was still running (it is left to end by its own timeouts)."""


def run_within(op: Callable[[], T], deadline: Deadline) -> T:
    """Run ``op``, waiting for it at most the time left before ``deadline``.

    ``op`` runs in a worker thread that the caller stops waiting for when the deadline passes
    (:class:`DeadlinePassed`): a GDAL read cannot be interrupted, so ``op`` must bound its own
    requests (a timeout from :meth:`Deadline.timeout`); its late result is dropped, nothing of it is
    written. The caller's rasterio/GDAL environment (thread-local) is carried over to the worker.

    Parameters
    ----------
    op : callable
        The operation; its exception, if any, is raised here.
    deadline : Deadline
        When to stop waiting; without one (``seconds`` None) ``op`` runs in the calling thread.
    """
    if deadline.seconds is None:
        return op()
    env = rasterio.env.getenv() if rasterio.env.hasenv() else {}
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with rasterio.Env(**env):
                result["value"] = op()
        except BaseException as e:  # handed to the caller
            result["error"] = e

    worker = threading.Thread(target=work, name="imgdiff-remote-read", daemon=False)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        raise DeadlinePassed
    if "error" in result:
        raise result["error"]
    return result["value"]


@dataclass
class RetryLog:
    """Counts the retries a fetch needed and why (mutable on purpose: filled while working)."""

    retries: int = 0
    reasons: list[str] | None = None

    def note(self, what: str, reason: str) -> None:
        self.retries += 1
        self.reasons = [*(self.reasons or []), f"{what}: {reason}"]


class _Permanent(Exception):
    """An error that retrying cannot fix (HTTP 404, not a raster, ...)."""


def _status_in(text: str) -> int | None:
    m = re.search(r"(?:HTTP (?:response )?code|HTTP error code|status(?: code)?)[:= ]+(\d{3})", text, re.I)
    return int(m.group(1)) if m else None


#: How a failed name lookup reads (getaddrinfo's EAI_NONAME, in urllib3, curl/GDAL and macOS wording): the
#: host is unknown or this machine has no name service (offline). Not worth another attempt, unlike
#: "Temporary failure in name resolution" (EAI_AGAIN).
_UNRESOLVABLE = re.compile(r"Name or service not known|nodename nor servname|No address associated with hostname"
                           r"|getaddrinfo failed|Could not resolve host", re.IGNORECASE)


def unresolvable(exc: BaseException) -> bool:
    """Whether an error is a failed name lookup that another attempt will not mend (:data:`_UNRESOLVABLE`)."""
    return bool(_UNRESOLVABLE.search(one_line(exc)))


def http_status(exc: BaseException) -> int | None:
    """The HTTP status code an error carries (``status_code``, its ``response``'s, or one named in its text)."""
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    return int(status) if status is not None else _status_in(one_line(exc))


#: Longest excerpt of an error's text in a message (an HTML error page would fill the terminal).
MAX_REASON_CHARS = 300


def reason_of(exc: BaseException) -> str:
    """An error's reason on one line for a message: its text (cut to :data:`MAX_REASON_CHARS`), led by
    ``HTTP <status>`` when it carries a status its text does not name (pystac-client's errors hold only
    the body of the answer, e.g. "Not Found" or an HTML page)."""
    text = one_line(exc) or type(exc).__name__
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + " ..."
    status = http_status(exc)
    if status is not None and str(status) not in text:
        text = f"HTTP {status}: {text}"
    return text


#: Longest reason of :func:`short_reason` (a warning line names it among other things).
SHORT_REASON_CHARS = 120
#: Fields of a JSON error body that say what was wrong (OGC API / STAC API ``description``, FastAPI ``detail``, ...).
_REASON_FIELDS = ("description", "detail", "message", "title", "error", "code")


def short_reason(exc: BaseException) -> str:
    """What an HTTP error answer said, short: ``HTTP <status> (<reason>)``.

    The reason is the first text field of a JSON error body among :data:`_REASON_FIELDS`
    (``{"code": "BadRequest", "description": "unsupported: query"}`` gives ``unsupported: query``),
    else the body itself, on one line and cut to :data:`SHORT_REASON_CHARS`.

    Parameters
    ----------
    exc : BaseException
        The error (pystac-client's ``APIError`` holds the answer's body and ``status_code``).
    """
    text = one_line(exc)
    try:
        body = json.loads(str(exc))
    except ValueError:
        body = None
    if isinstance(body, dict):
        fields = [body.get(k) for k in _REASON_FIELDS]
        found = next((f for f in fields if isinstance(f, str) and f.strip()), None)
        if found is not None:
            text = one_line(found)
    if len(text) > SHORT_REASON_CHARS:
        text = text[:SHORT_REASON_CHARS] + " ..."
    status = http_status(exc)
    if status is None:
        return text or type(exc).__name__
    return f"HTTP {status}" + (f" ({text})" if text and text != str(status) else "")


def is_retryable(exc: BaseException) -> bool:
    """Whether an error from GDAL, requests or JSON decoding is worth another attempt.

    Timeouts, connection resets, truncated transfers, undecodable (cut) data and
    HTTP 408/429/5xx are; other HTTP 4xx answers are not. GDAL reports a failed
    header read of a remote file as "not recognized as being in a supported file
    format", so that is retried too (a few seconds lost on a real non-raster).
    """
    if isinstance(exc, _Permanent) or unresolvable(exc):
        return False
    status = http_status(exc)
    if status is not None:
        return int(status) in RETRY_STATUS
    return True


def with_retries(
    op: Callable[[], T],
    what: str,
    policy: RetryPolicy,
    *,
    retry_log: RetryLog | None = None,
    on_retry: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    catch: tuple[type[BaseException], ...] = (Exception,),
    deadline: Deadline | None = None,
    wait_in_thread: bool = True,
) -> T:
    """Run ``op`` until it succeeds, at most ``policy.attempts`` times, waiting longer after each failure.

    Parameters
    ----------
    op : callable
        The operation; it raises on failure.
    what : str
        What is being done (a URL and a window), for log lines and the final error.
    policy : RetryPolicy
    retry_log : RetryLog, optional
        Receives one entry per retry.
    on_retry : callable, optional
        Called before each retry (e.g. to drop GDAL's cache of a failed file).
    sleep : callable
        ``time.sleep``; replaceable in tests.
    catch : tuple of exception types
        The errors that count as a failed attempt (others propagate at once).
    deadline : Deadline, optional
        A bound on all attempts and waits together: no attempt starts once the wait before it would
        reach the deadline, and ``op`` runs under :func:`run_within` (unless ``wait_in_thread`` is False).
    wait_in_thread : bool
        With ``deadline``: run ``op`` under :func:`run_within`, for an operation that cannot be
        interrupted (a GDAL read); False for one that ends by ``deadline`` itself (its requests made on
        a :func:`bounded_session` given ``deadline``), run in the calling thread.

    Raises
    ------
    NetworkError
        When a permanent error occurs, all attempts fail or the deadline passes; the message names
        ``what``, the number of attempts (or the deadline) and the last error.
    """
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return op() if deadline is None or not wait_in_thread else run_within(op, deadline)
        except DeadlinePassed:
            raise NetworkError(_late(what, deadline, f"attempt {attempt + 1} still running: the server sends "
                                         "too slowly or not at all")) from None
        except catch as e:  # noqa: PERF203 - bounded loop
            if isinstance(e, ImgdiffError):
                raise  # a problem of the data, or a request past its deadline: not mended by asking again
            late = _chained(e, RequestTooSlow)
            if late is not None:  # pystac-client re-raises every error of a request as an APIError of its text
                raise late from None
            reason = reason_of(e)
            if unresolvable(e):
                raise NetworkError(f"{what}: the host name does not resolve ({reason}); not retried: check the "
                                   "network connection and the URL") from None
            if not is_retryable(e):
                raise NetworkError(f"{what}: {reason} (not retried: the server refused or the data is not valid)") from None
            if attempt == policy.attempts - 1:
                raise NetworkError(
                    f"{what}: failed after {policy.attempts} attempt(s); last error: {reason}; "
                    "check the network or the catalogue, then run the command again (finished files are kept)"
                ) from None
            wait = delays[attempt]
            if deadline is not None and deadline.remaining() <= wait:
                raise NetworkError(_late(what, deadline, f"{attempt + 1} attempt(s); last error: {reason}")) from None
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", what, reason, wait, attempt + 2, policy.attempts)
            if retry_log is not None:
                retry_log.note(what, reason)
            if on_retry is not None:
                on_retry()
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _chained(exc: BaseException, kind: type[E]) -> E | None:
    """The first error of type ``kind`` in the chain of ``exc`` (itself, its cause or context), if any."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, kind):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _late(what: str, deadline: Deadline | None, how: str) -> str:
    secs = deadline.seconds if deadline is not None and deadline.seconds is not None else 0.0
    return (f"{what}: not finished within the deadline of {secs:g} s ({how}); nothing of it was written: "
            "run the command again later, or raise --deadline")


# --------------------------------------------------------------------------- GDAL
def gdal_path(href: str) -> str:
    """The GDAL path of an asset href: ``/vsicurl/`` for HTTP(S), ``/vsis3/`` for s3://, local paths as they are."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    if href.startswith("file://"):
        return href[7:]
    return href


def gdal_options(policy: RetryPolicy, href: str = "", deadline: Deadline | None = None) -> dict[str, Any]:
    """GDAL configuration for cloud-optimised reads: no directory listing, our own retries, timeouts.

    GDAL's HTTP timeout bounds each request whole (connect and transfer, curl's ``CURLOPT_TIMEOUT``):
    ``policy.timeout_s``, or the time left before ``deadline`` when that is shorter.
    """
    timeout = int(policy.timeout_s) if deadline is None else deadline.timeout(policy.timeout_s)
    opts: dict[str, Any] = {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "GDAL_HTTP_MAX_RETRY": 0,
        "GDAL_HTTP_TIMEOUT": timeout,
        "GDAL_HTTP_CONNECTTIMEOUT": int(min(timeout, 10)),
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
    }
    if href.startswith("s3://") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        opts["AWS_NO_SIGN_REQUEST"] = "YES"
    return opts


_GDAL_LIB: Any = None


def clear_gdal_http_cache(href: str | None = None) -> None:
    """Forget what GDAL cached about a remote file (all of them when None).

    A failed open is otherwise remembered as "missing" and a retry would not reach the
    server. Best effort: calls ``VSICurlPartialClearCache`` / ``VSICurlClearCache`` of
    the GDAL library rasterio loaded.
    """
    global _GDAL_LIB
    if _GDAL_LIB is None:
        candidates = glob.glob(str(Path(rasterio.__file__).parent.parent / "rasterio.libs" / "libgdal*.so*"))
        candidates += [line.split()[-1] for line in _maps() if "libgdal" in line]
        for c in candidates:
            try:
                lib = ctypes.CDLL(c)
                lib.VSICurlClearCache  # noqa: B018 - probe the symbol
                _GDAL_LIB = lib
                break
            except (OSError, AttributeError):
                continue
        else:
            _GDAL_LIB = False
    if not _GDAL_LIB:
        return
    if href is None:
        _GDAL_LIB.VSICurlClearCache()
    else:
        _GDAL_LIB.VSICurlPartialClearCache(ctypes.c_char_p(gdal_path(href).encode()))


def _maps() -> list[str]:
    try:
        return Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []


@dataclass(frozen=True)
class RemoteInfo:
    """Grid and radiometric fields of a remote raster's first band."""

    crs: CRS | None
    transform: Affine
    shape: tuple[int, int]
    dtype: str
    nodata: float | None


def raster_info(href: str, policy: RetryPolicy, *, retry_log: RetryLog | None = None,
                sleep: Callable[[float], None] = time.sleep, known: RemoteInfo | None = None) -> RemoteInfo:
    """Describe the grid of a remote raster: ``known`` (from STAC metadata) when given, else from its header."""
    if known is not None:
        return known
    deadline = Deadline(policy.deadline_s)

    def op() -> RemoteInfo:
        with rasterio.Env(**gdal_options(policy, href, deadline)), rasterio.open(gdal_path(href)) as ds:
            return RemoteInfo(ds.crs, ds.transform, (ds.height, ds.width), ds.dtypes[0], ds.nodata)

    return with_retries(_explained(op), f"{href}: open", policy, retry_log=retry_log,
                        on_retry=lambda: clear_gdal_http_cache(href), sleep=sleep, catch=(RasterioError, OSError),
                        deadline=deadline)


def read_window(href: str, window: Window, policy: RetryPolicy, *, retry_log: RetryLog | None = None,
                sleep: Callable[[float], None] = time.sleep, expect: RemoteInfo | None = None) -> np.ndarray:
    """Read band 1 of a remote raster inside a pixel window (HTTP range requests only).

    Parameters
    ----------
    href : str
        HTTP(S), s3:// or local path of a (cloud-optimised) GeoTIFF.
    window : rasterio.windows.Window
        Columns (x) and rows (y) to read, inside the raster.
    policy : RetryPolicy
        Retries and timeouts; ``policy.deadline_s`` bounds the whole read, retries included.
    retry_log : RetryLog, optional
        Collects the retries made (for the fetch report).
    sleep : callable
        Waits between retries (``time.sleep``; tests pass a fake).
    expect : RemoteInfo, optional
        The grid the window was computed on (e.g. from STAC metadata); checked against the raster.

    Returns
    -------
    ndarray
        2-D array (rows, cols) of the raster's data type.

    Raises
    ------
    NetworkError
        After the attempts of ``policy``, or when ``policy.deadline_s`` passes (a server sending too
        slowly): one line naming ``href`` and the window.
    """
    deadline = Deadline(policy.deadline_s)

    def op() -> np.ndarray:
        with rasterio.Env(**gdal_options(policy, href, deadline)), rasterio.open(gdal_path(href)) as ds:
            if expect is not None and (ds.crs != expect.crs or not ds.transform.almost_equals(expect.transform)
                                       or ds.shape != expect.shape):
                raise InputError(
                    f"{href}: the raster's grid ({ds.crs}, {tuple(ds.transform)[:6]}, {ds.shape}) differs from "
                    f"the item's projection metadata ({expect.crs}, {tuple(expect.transform)[:6]}, {expect.shape})"
                )
            data = ds.read(1, window=window)
        if data.shape != (int(window.height), int(window.width)):
            raise OSError(f"short read: got {data.shape}, expected {(int(window.height), int(window.width))}")
        return data

    w = f"{int(window.col_off)},{int(window.row_off)},{int(window.width)}x{int(window.height)}"
    return with_retries(_explained(op), f"{href}: window {w}", policy, retry_log=retry_log,
                        on_retry=lambda: clear_gdal_http_cache(href), sleep=sleep, catch=(RasterioError, OSError),
                        deadline=deadline)


def _explained(op: Callable[[], T]) -> Callable[[], T]:
    """``op`` with GDAL's "not recognized as a supported file format" explained for remote files."""

    def run() -> T:
        try:
            return op()
        except RasterioError as e:
            text = one_line(e)
            if "not recognized as" in text:
                raise OSError("header read failed (an HTTP error or a cut transfer; or not a GeoTIFF)") from None
            raise

    return run


# --------------------------------------------------------------------------- JSON
class RequestTooSlow(NetworkError):
    """An HTTP request for JSON did not end within its deadline, its own or its search's (a server trickling its
    answer, or pages that add up)."""


#: A wait for data that ends this close to the deadline (seconds) was ended by it (socket timers round).
_SLACK_S = 0.05


def _capped_timeout(timeout: Any, deadline: Deadline) -> Any:
    """A requests ``timeout`` (seconds, a (connect, read) pair or None) no longer than the time left."""
    left = deadline.remaining()
    if isinstance(timeout, tuple):
        return tuple(left if t is None else min(float(t), left) for t in timeout)
    return left if timeout is None else min(float(timeout), left)


def _named(request: Any) -> str:
    """``METHOD URL`` of a request, the query string left out (a GET item search carries its GeoJSON there)."""
    url = str(request.url)
    base, _, query = url.partition("?")
    return f"{request.method} {base}" + ("?..." if query else "")


def _deadline_adapter(deadline_s: float, whole: Deadline | None = None, what: str = "") -> Any:
    """A requests transport adapter ending each request at ``deadline_s`` seconds, its answer read or not;
    or, given ``whole``, every request by that one deadline (``what`` names their operation in the error)."""
    from requests.adapters import HTTPAdapter

    class DeadlineAdapter(HTTPAdapter):
        """Sends a request, then reads its body piece by piece as it arrives, until the deadline.

        A timeout of requests bounds one wait for data, so a server sending a few bytes every
        second is never timed out; the deadline bounds the request whole. The connection is cut
        when it passes (the server stops sending) and :class:`RequestTooSlow` names the request
        (with ``whole``: the operation, and the request it cut short). No request is sent once
        ``whole`` has passed. No retries of its own (``max_retries`` 0): every retry is :func:`with_retries`'.
        """

        def send(self, request: Any, stream: bool = False, timeout: Any = None, **kw: Any) -> Any:  # noqa: ARG002
            deadline = whole if whole is not None else Deadline(deadline_s)
            if whole is None:
                late = RequestTooSlow(_late(_named(request), deadline, "the server sends too slowly or not at all"))
            elif deadline.remaining() <= 0:
                raise RequestTooSlow(_late(what, deadline, f"all its requests together; passed before "
                                                           f"{_named(request)} was sent"))
            else:
                late = RequestTooSlow(_late(what, deadline, f"all its requests together; {_named(request)} cut short"))
            wait = timeout[-1] if isinstance(timeout, tuple) else timeout  # the read timeout
            try:
                resp = super().send(request, stream=True, timeout=_capped_timeout(timeout, deadline), **kw)
            except Exception:
                if deadline.remaining() <= _SLACK_S:  # its timeout was cut to the time left: the deadline ended it
                    raise late from None
                raise
            chunks: list[bytes] = []
            try:
                while True:
                    left = deadline.remaining()
                    if left <= 0:
                        raise late
                    sock = getattr(getattr(resp.raw, "connection", None), "sock", None)
                    if sock is not None:  # no wait for data beyond the deadline
                        sock.settimeout(left if wait is None else min(float(wait), left))
                    # what has arrived, not a full buffer (read1: urllib3 >= 2.2, pinned in pyproject.toml)
                    chunk = resp.raw.read1(1 << 16, decode_content=True)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except Exception as e:
                resp.close()  # the connection is dropped, not returned to the pool half-read
                if e is not late and deadline.remaining() <= _SLACK_S:  # a wait for data cut short by the deadline
                    raise late from None
                raise
            resp._content = b"".join(chunks)
            resp._content_consumed = True
            resp.raw.release_conn()
            return resp

    return DeadlineAdapter()


def bounded_session(policy: RetryPolicy, session: Any = None, *, deadline: Deadline | None = None,
                    what: str = "") -> Any:
    """A requests ``Session`` whose every request ends within ``policy.deadline_s``, its answer read.

    Each request (an item's JSON) may take at most ``policy.deadline_s`` from sending to its last
    byte; given ``deadline``, the requests together (a catalogue's landing page and every page of an
    item search) end by it, each request's bound the time left. One that does not end in time raises
    :class:`RequestTooSlow` (a :class:`~imgdiff.errors.NetworkError`), one line naming the method and
    URL (with ``deadline``: ``what``, and the request cut short), which :func:`with_retries` does not
    retry. Without a deadline (``policy.deadline_s`` None) the session is left as it is.

    Parameters
    ----------
    policy : RetryPolicy
        ``deadline_s`` bounds each request (without ``deadline``).
    session : requests.Session, optional
        The session to bound (pystac-client's); default a new one.
    deadline : Deadline, optional
        One deadline for all the session's requests together, started by the caller (of
        ``policy.deadline_s`` seconds); default one of ``policy.deadline_s`` for each request.
    what : str
        What the requests together do, for the error (``"STAC search <catalog> (<collection>)"``).

    Returns
    -------
    requests.Session
    """
    import requests

    session = session if session is not None else requests.Session()
    if policy.deadline_s is not None:
        adapter = _deadline_adapter(policy.deadline_s, deadline, what)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def get_json(url: str, policy: RetryPolicy, *, retry_log: RetryLog | None = None,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """GET a JSON document (a STAC item) over HTTP, or read it from a local path.

    Each request may take ``policy.timeout_s`` per wait for data and ``policy.deadline_s`` in all
    (:func:`bounded_session`); failures are retried as ``policy`` says (:func:`with_retries`).
    """
    if not url.startswith(("http://", "https://")):
        p = Path(url[7:] if url.startswith("file://") else url)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{p}: no such STAC item file") from None
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: not a readable STAC item JSON ({e})") from None

    def op() -> dict[str, Any]:
        with bounded_session(policy) as session:
            r = session.get(url, timeout=policy.timeout_s,
                            headers={"Accept": "application/geo+json, application/json"})
        if r.status_code >= 400:
            raise OSError(f"HTTP response code: {r.status_code}")
        return r.json()

    return with_retries(op, url, policy, retry_log=retry_log, sleep=sleep)
