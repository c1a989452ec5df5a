"""One HTTP session factory for every source: timeouts, retries with backoff, a User-Agent, clear errors.

Why shared: every adapter must behave the same when an upstream is slow, rate-limits (429 with
Retry-After) or breaks; an operator reading a ``SourceError`` learns the URL and which setting points
the system at a mirror. Every request has an overall deadline (``http_deadline_s``, body included):
a read timeout alone is per socket read, so an upstream trickling one byte every few seconds would
hold a run for ever. URLs and exception texts are redacted (``smmdn.redact``): an API key in a query
never reaches an error message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from smmdn.config import Settings
from smmdn.errors import SourceError, SourceUnreachable
from smmdn.redact import redact

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
BODY_CHUNK = 64 * 1024
MAX_RETRY_AFTER_S = 120.0  # an upstream asking for longer is treated as down for this run


class CappedRetry(Retry):
    """``Retry`` that honours Retry-After but never sleeps longer than ``MAX_RETRY_AFTER_S``."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        if value is None:
            return None
        return min(value, MAX_RETRY_AFTER_S)


def make_session(settings: Settings) -> requests.Session:
    """A ``requests`` session with urllib3 retries (429/5xx, connect/read errors) and our User-Agent."""
    retry = CappedRetry(
        total=settings.http_retries,
        connect=settings.http_retries,
        read=settings.http_retries,
        status=settings.http_retries,
        backoff_factor=settings.http_backoff_s,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = settings.user_agent
    session.trust_env = False  # a stray HTTP(S)_PROXY must not reroute station data
    return session


def timeouts(settings: Settings) -> tuple[float, float]:
    return (settings.http_connect_timeout_s, settings.http_read_timeout_s)


def get(
    session: requests.Session,
    url: str,
    *,
    settings: Settings,
    setting: str,
    params: Mapping[str, Any] | None = None,
    allow_404: bool = False,
) -> requests.Response | None:
    """GET ``url``; raise ``SourceError`` naming the URL and ``setting`` on any failure.

    The body is read here, within ``settings.http_deadline_s`` of the start (``SourceUnreachable``
    when it runs out). Returns ``None`` for a 404 when ``allow_404`` (e.g. a USCRN year file not
    published yet).
    """
    deadline = time.monotonic() + settings.http_deadline_s
    try:
        response = session.get(url, params=params, timeout=timeouts(settings), stream=True)
    except requests.RequestException as exc:
        raise SourceUnreachable(
            f"cannot reach {redact(url)}: {type(exc).__name__}: {redact(str(exc))}; "
            f"check the network or point SMMDN_{setting.upper()} at a mirror"
        ) from exc
    _read_body(response, deadline, settings, setting)
    if allow_404 and response.status_code == 404:
        return None
    if response.status_code >= 400:
        kind = SourceUnreachable if response.status_code in RETRY_STATUSES else SourceError
        raise kind(
            f"{redact(response.url)} answered HTTP {response.status_code} {response.reason}: "
            f"{redact(response.text[:200])!r}; check SMMDN_{setting.upper()} (or the request parameters)"
        )
    return response


def _read_body(response: requests.Response, deadline: float, settings: Settings, setting: str) -> None:
    """Read the whole body before ``deadline`` (each socket read waits at most what is left)."""
    raw = response.raw
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _past_deadline(response, settings, setting, sum(map(len, chunks)))
            sock = getattr(getattr(raw, "_connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(min(left, settings.http_read_timeout_s))
            chunk = raw.read1(BODY_CHUNK, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
    except SourceError:
        response.close()
        raise
    except Exception as exc:  # urllib3 protocol/timeout errors, socket errors
        response.close()
        if deadline - time.monotonic() <= 0:
            raise _past_deadline(response, settings, setting, sum(map(len, chunks))) from exc
        raise SourceUnreachable(
            f"truncated or broken response from {redact(response.url)}: {type(exc).__name__}: {redact(str(exc))}; "
            f"retry later or check SMMDN_{setting.upper()}"
        ) from exc
    response._content = b"".join(chunks)
    response._content_consumed = True


def _past_deadline(response: requests.Response, settings: Settings, setting: str, got: int) -> SourceUnreachable:
    return SourceUnreachable(
        f"{redact(response.url)} did not finish answering within {settings.http_deadline_s:g} s ({got} bytes so "
        f"far); retry later, raise SMMDN_HTTP_DEADLINE_S or point SMMDN_{setting.upper()} at a mirror")


def read_text(response: requests.Response, *, setting: str) -> str:
    """Body as text; a truncated body (shorter than Content-Length) is a ``SourceError``."""
    try:
        body = response.content
    except requests.RequestException as exc:
        raise SourceUnreachable(
            f"truncated or broken response from {redact(response.url)}: {exc}; check SMMDN_{setting.upper()}"
        ) from exc
    expected = response.headers.get("Content-Length")
    plain = "Content-Encoding" not in response.headers
    if expected and expected.isdigit() and plain and len(body) != int(expected):
        raise SourceUnreachable(
            f"truncated response from {redact(response.url)}: {len(body)} of {expected} bytes; "
            f"retry later or check SMMDN_{setting.upper()}"
        )
    try:
        return body.decode(response.encoding or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise SourceError(f"undecodable response from {redact(response.url)}: {exc}") from exc


class NotJson(SourceUnreachable):
    """An upstream answered (often HTTP 200) with a body that is not JSON: an HTML error page from a proxy,
    a cut-off document. The upstream's fault, not the data's: retried within the run, then exit 3."""


def read_json(response: requests.Response, *, setting: str) -> Any:
    """Body as JSON; a body that is not JSON (malformed, or an HTML page) is ``NotJson`` naming the URL."""
    text = read_text(response, setting=setting)
    try:
        return json.loads(text)
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "no Content-Type")
        raise NotJson(
            f"{redact(response.url)} answered HTTP {response.status_code} with a body that is not JSON ({kind}: "
            f"{exc}; starts {redact(text[:80])!r}); retry later or check SMMDN_{setting.upper()}"
        ) from exc


def get_json(session: requests.Session, url: str, *, settings: Settings, setting: str,
             params: Mapping[str, Any] | None = None) -> Any:
    """GET ``url`` and read its JSON, asking again (``http_retries`` times, backing off) when the body is not JSON.

    Why here and not in urllib3's retries: those see only the status line, and a proxy's HTML page or a
    cut-off body comes with 200; one such answer should not cost the run its forcing.
    """
    attempts = max(0, int(settings.http_retries)) + 1
    for attempt in range(attempts):
        response = get(session, url, settings=settings, setting=setting, params=params)
        assert response is not None  # no allow_404
        try:
            return read_json(response, setting=setting)
        except NotJson as exc:
            if attempt + 1 == attempts:
                raise NotJson(f"{exc} (after {attempts} attempt(s))") from exc
            log.warning("%s; asking again", exc)
            time.sleep(settings.http_backoff_s * (2 ** attempt))
    raise AssertionError("unreachable")  # pragma: no cover
