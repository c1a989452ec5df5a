"""The one redaction function: secrets never reach stdout, logs, artifacts, alert messages or the database.

Why one function: a secret leaks through whichever path forgot to scrub it (an URL in an exception, a
log line, a summary artifact). ``redact`` knows

- every ``SecretStr`` setting's value: each ``Settings`` object registers them when it is built
  (``remember``), and so do resolvers of routing secrets;
- the usual secret query keys (``apikey``, ``token``, ``key``, ``password``, ``signature`` …) in URLs;
- passwords in URL userinfo (``postgresql://user:secret@host``).

``install_log_redaction`` routes every log record through it (a log-record factory, so Prefect's API log
handler, which ships records to its database, only ever sees redacted text). Imports nothing of smmdn.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
SECRET_QUERY_KEYS = ("apikey", "api_key", "api-key", "access_token", "token", "key", "password", "passwd",
                     "pass", "secret", "signature", "sig", "auth", "client_secret")
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; no real secret is this short

_QUERY = re.compile(
    r"(?P<lead>[?&;\s\[(,]|^|%3[fF]|%26)(?P<key>(?:" + "|".join(re.escape(k) for k in SECRET_QUERY_KEYS)
    + r"))(?P<eq>=|%3[dD])(?P<value>[^&;#\s'\"<>)\]]+)",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s'\"]*):(?P<pw>[^@/\s'\"]+)@")
_lock = threading.Lock()
_secrets: set[str] = set()


def remember(values: Iterable[str | None]) -> None:
    """Register secret values (and, for comma-separated lists such as apprise URLs, each part)."""
    with _lock:
        for value in values:
            if not value:
                continue
            for part in {value, *value.split(",")}:
                for piece in _pieces(part.strip()):
                    if len(piece) >= MIN_SECRET_LENGTH:
                        _secrets.add(piece)


def _pieces(secret: str) -> list[str]:
    """A secret and, for an URL (apprise), the parts that carry its credentials: a library that prints the
    URL its own way (host and token, no scheme) still prints them."""
    from urllib.parse import parse_qsl, urlsplit

    out = [secret]
    if "://" not in secret:
        return out
    try:
        url = urlsplit(secret)
        out += [p for p in (url.username, url.password) if p]
    except ValueError:  # not parseable as an URL after all: the whole value is still masked
        return out
    out += [seg for seg in url.path.split("/") if len(seg) >= 8]
    out += [v for _, v in parse_qsl(url.query) if len(v) >= 8]
    return out


def remember_settings(settings: Any) -> None:
    """Register the value of every ``SecretStr`` field of a pydantic settings object."""
    from pydantic import SecretStr

    remember(v.get_secret_value() for v in (getattr(settings, name, None) for name in type(settings).model_fields)
             if isinstance(v, SecretStr))


def redact(text: str) -> str:
    """``text`` with every known secret, secret query value and URL password replaced by ``***``."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)  # longest first: a list before its parts
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _QUERY.sub(lambda m: f"{m['lead']}{m['key']}{m['eq']}{MASK}", text)
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside nested dicts, lists and tuples (artifact rows, JSON)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


_installed = False


def install_log_redaction() -> None:
    """Make every log record carry redacted text (idempotent; the message is rendered once, then masked)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error report
            return record
        masked = redact(message)
        if masked != message or record.args:
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
