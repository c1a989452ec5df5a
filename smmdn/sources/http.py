"""One HTTP session factory for every source: timeouts, retries with backoff, a User-Agent, clear errors.

Why shared: every adapter must behave the same when an upstream is slow, rate-limits (429 with
Retry-After) or breaks; an operator reading a ``SourceError`` learns the URL and which setting points
the system at a mirror.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from smmdn.config import Settings
from smmdn.errors import SourceError

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
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

    Returns ``None`` for a 404 when ``allow_404`` (e.g. a USCRN year file not published yet).
    """
    try:
        response = session.get(url, params=params, timeout=timeouts(settings))
    except requests.RequestException as exc:
        raise SourceError(
            f"cannot reach {url}: {type(exc).__name__}: {exc}; "
            f"check the network or point SMMDN_{setting.upper()} at a mirror"
        ) from exc
    if allow_404 and response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise SourceError(
            f"{response.url} answered HTTP {response.status_code} {response.reason}: "
            f"{response.text[:200]!r}; check SMMDN_{setting.upper()} (or the request parameters)"
        )
    return response


def read_text(response: requests.Response, *, setting: str) -> str:
    """Body as text; a truncated body (shorter than Content-Length) is a ``SourceError``."""
    try:
        body = response.content
    except requests.RequestException as exc:
        raise SourceError(
            f"truncated or broken response from {response.url}: {exc}; check SMMDN_{setting.upper()}"
        ) from exc
    expected = response.headers.get("Content-Length")
    plain = "Content-Encoding" not in response.headers
    if expected and expected.isdigit() and plain and len(body) != int(expected):
        raise SourceError(
            f"truncated response from {response.url}: {len(body)} of {expected} bytes; "
            f"retry later or check SMMDN_{setting.upper()}"
        )
    try:
        return body.decode(response.encoding or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise SourceError(f"undecodable response from {response.url}: {exc}") from exc


def read_json(response: requests.Response, *, setting: str) -> Any:
    """Body as JSON; malformed JSON is a ``SourceError`` naming the URL."""
    text = read_text(response, setting=setting)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SourceError(
            f"malformed JSON from {response.url}: {exc}; check SMMDN_{setting.upper()}"
        ) from exc
