"""Database exceptions as smmdn errors: is it the data, or the environment?

Why here: only the store may know sqlalchemy and psycopg, yet ingest must tell a value the database
refuses (reject that file) from a database that is down (leave every file for the next run), and the
CLI must print one line with the fix instead of a chained traceback.
"""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg
import sqlalchemy as sa

from smmdn.errors import DataRefused, SmmdnError, StoreUnavailable
from smmdn.redact import redact

_NO_SCHEMA = ("no such table", "does not exist", "undefinedtable", "no such column")
_NO_RIGHTS = ("permission denied", "insufficientprivilege", "readonly database", "attempt to write a readonly",
              "unable to open database")


def _url(engine_or_url: Any) -> str:
    url = getattr(engine_or_url, "url", engine_or_url)
    try:
        return redact(url.render_as_string(hide_password=True)) if hasattr(url, "render_as_string") else redact(
            str(url))
    except Exception:  # pragma: no cover - an URL object that cannot render
        return "the database"


def translate(exc: BaseException, engine_or_url: Any = None) -> SmmdnError | None:
    """The smmdn error for a database exception (``None`` when ``exc`` is not one)."""
    if not isinstance(exc, sa.exc.SQLAlchemyError | psycopg.Error):
        return None
    where = _url(engine_or_url) if engine_or_url is not None else "the database"
    orig = getattr(exc, "orig", None) if isinstance(exc, sa.exc.SQLAlchemyError) else exc
    detail = redact(" ".join(str(orig if orig is not None else exc).split()))[:300]
    low = f"{type(orig).__name__} {detail}".lower()
    refused = (sa.exc.DataError, sa.exc.IntegrityError, psycopg.DataError, psycopg.IntegrityError)
    if isinstance(exc, refused) or isinstance(orig, refused) or (
            isinstance(exc, sa.exc.StatementError) and isinstance(orig, ValueError | TypeError)):
        return DataRefused(f"the database refused a value: {detail}", where=where,
                           fix="correct or remove the offending value in the input; nothing was written")
    if any(s in low for s in _NO_SCHEMA):
        return StoreUnavailable(f"{where} has no (or an outdated) smmdn schema: {detail}",
                                fix="run `smmdn db init` against it, or point SMMDN_DATABASE_URL (--url) at the "
                                    "right database")
    if any(s in low for s in _NO_RIGHTS):
        return StoreUnavailable(f"{where} refused access: {detail}",
                                fix="grant the role the rights it needs (infra/db-users.sh) or fix the file's "
                                    "permissions")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.DisconnectionError
                  | sa.exc.TimeoutError | psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable(f"cannot use {where}: {detail}",
                                fix="start the database or check SMMDN_DATABASE_URL (host, port, credentials); "
                                    "nothing was lost, rerun when it is back")
    return StoreUnavailable(f"database error at {where}: {detail}",
                            fix="check the database's log; rerun with --debug for the traceback")


def _finite(value: Any) -> Any:
    """Non-finite floats as text: JSON has no inf/NaN and PostgreSQL refuses them in json/jsonb."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'inf', '-inf', 'nan'
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """The store's JSON serializer: always valid JSON (non-finite floats become strings)."""
    return json.dumps(_finite(value), allow_nan=False, default=str)
