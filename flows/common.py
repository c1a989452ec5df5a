"""What every flow shares: settings, store and registry handles, and operator artifacts.

Flows stay thin: each task calls one library function and returns a small JSON-able summary (persisted,
so a retried or resumed parent does not redo finished work and the UI shows what each step returned).

One policy for steps that must not stop the day (a broken detector, notifier or verifier, a source still
down after its retries): the flow calls the task with ``return_state=True`` and ``outcome`` turns the
final state into ``{"status": "ok", "result": …}`` or ``{"status": "failed", "detail": …}``, logged at
WARNING, so forecasts are still issued and the daily summary says what failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from smmdn.config import Settings, get_settings
from smmdn.redact import redact, redact_value


def run_name(flow: str, *keys: str, task: bool = False) -> Callable[[], str]:
    """A flow-run name from the run's parameters (``daily-2024-05-15``): the UI's run list reads as the days
    it covers. A missing ``day`` is the day the run resolves to (yesterday in ``SMMDN_TIMEZONE``).
    ``task``: the name of a task run (a daily step run as a task: ``validate-2024-05-15``), from its own
    parameters."""

    def name() -> str:
        from prefect.runtime import flow_run, task_run

        params = (task_run.parameters if task else flow_run.parameters) or {}
        parts = [flow]
        for key in keys or ("day",):
            value = params.get(key)
            if key == "day" and value is None:
                from smmdn.cycle.day import resolve_day

                value = resolve_day(None, settings()).issue
            if value is None:
                continue
            text = str(value)
            parts.append(text[:10] if re.match(r"\d{4}-\d{2}-\d{2}", text) else text)
        return "-".join(parts)

    return name


class _RunLogHandler(logging.Handler):
    """Library records (``smmdn.*``) into the Prefect run that is executing, so the UI shows what each step
    did; outside a run (the CLI) nothing is sent and nothing is warned."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._api: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            return
        if self._api is None:
            from prefect.logging.handlers import APILogHandler

            self._api = APILogHandler()
        self._api.handle(record)


def forward_library_logs() -> None:
    """Attach the run-log handler to the ``smmdn`` logger once (INFO and above)."""
    library = logging.getLogger("smmdn")
    if not any(isinstance(h, _RunLogHandler) for h in library.handlers):
        handler = _RunLogHandler(level=logging.INFO)
        library.addHandler(handler)
        if library.level == logging.NOTSET or library.level > logging.INFO:
            library.setLevel(logging.INFO)


forward_library_logs()


def settings() -> Settings:
    return get_settings()


_STORES: dict[str, Any] = {}


def store(cfg: Settings | None = None) -> Any:
    """The store of the configured database, one per process and URL: every step of a cycle (and every cycle
    of a long-running worker or the demo) shares its engine and connection pool instead of opening its own.
    Switching databases (tests, the benchmark's sizes) disposes the previous one's pool."""
    from smmdn.store import Store

    url = (cfg or settings()).resolved_database_url
    db = _STORES.get(url)
    if db is None:
        for old in _STORES.values():
            old.dispose()
        _STORES.clear()
        db = _STORES[url] = Store(url)
    return db


def explained_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with database exceptions raised as the smmdn error that says what to do.

    Why: the CLI translates a raw ``OperationalError`` (database down) into "cannot use …: start the
    database", but a flow run (a deployment, the UI) failed with the driver's traceback alone. Put it
    under ``@flow``; the signature Prefect reads is ``fn``'s (``functools.wraps``).
    """
    import functools

    from smmdn.store.errors import translate

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            clear = translate(exc, settings().resolved_database_url)
            if clear is None:
                raise
            raise clear from exc

    return wrapper


_REGISTRIES: dict[tuple[str, str], Any] = {}


def registry(cfg: Settings | None = None) -> Any:
    """The site registry, parsed once per file content: a cycle reads it in several steps (a national
    registry parses in a noticeable fraction of a second), and an edited file is read again at once."""
    from smmdn.ingest import registry_from_settings

    cfg = cfg or settings()
    path = str(cfg.registry_file or "")
    try:
        text = Path(path).read_text(encoding="utf-8") if path else ""
    except OSError:  # unreadable: the library says what to fix
        return registry_from_settings(cfg)
    key = (path, text)
    found = _REGISTRIES.get(key)
    if found is None:
        found = registry_from_settings(cfg)
        _REGISTRIES.clear()
        _REGISTRIES[key] = found
    return found


def logger() -> Any:
    return get_run_logger()


def outcome(state: Any, what: str) -> dict[str, Any]:
    """A task's final state as a step summary: ok with its result (tasks return JSON-able values), or failed
    with the reason."""
    if state.is_completed():
        return {"status": "ok", "result": state.result()}
    detail = redact(str(state.message or state.type))[:500]
    logger().warning("%s failed: %s", what, detail)
    return {"status": "failed", "detail": detail}


def summarise(result: Any) -> Any:
    """Frames → row counts + a few rows; dataclasses/objects → dicts; everything JSON-able."""
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return {"rows": len(result), "head": result.head(10).astype(str).to_dict("records")}
    if hasattr(result, "to_dict") and not isinstance(result, dict):
        try:
            return summarise(result.to_dict())
        except TypeError:
            pass
    if hasattr(result, "__dataclass_fields__"):
        return summarise(asdict(result))
    if isinstance(result, dict):
        return {str(k): summarise(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [summarise(v) for v in result][:50]
    if isinstance(result, int | float | str | bool) or result is None:
        return result
    return str(result)


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def table(key: str, rows: Sequence[dict[str, Any]], description: str) -> None:
    """A keyed table artifact (same key every run, so the UI shows its history); redacted like everything shown."""
    clean = [{k: (v if isinstance(v, int | float | str | bool) or v is None else str(v)) for k, v in r.items()}
             for r in rows]
    create_table_artifact(key=artifact_key(key), table=redact_value(clean), description=redact(description))


def markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=artifact_key(key), markdown=redact(text), description=redact(description))
