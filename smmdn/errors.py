"""Errors that carry what a user needs to fix bad input: where, what, which rows, and the fix.

Three kinds, because each asks something different of the operator (and maps to one CLI exit code):
bad input (``InputError``: fix the data or the command), the environment (``EnvironmentFault``,
``SourceError``: the database, network, disk or permissions; retry once it is back), and a check
that ran and failed (``CheckFailed``). Every message is redacted (``smmdn.redact``) when raised, so no
exception text can carry a secret into a log, an artifact or the database.
"""

from __future__ import annotations

from collections.abc import Sequence


class SmmdnError(Exception):
    """Base class of every error smmdn raises on purpose (the CLI prints these without a traceback)."""

    def __init__(self, *args: object) -> None:
        from smmdn.redact import redact

        super().__init__(*(redact(str(a)) if isinstance(a, str) else a for a in args))


class InputError(SmmdnError):
    """Bad input: names the table or file, the column, offending rows and the fix. Nothing was written."""

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        column: str | None = None,
        rows: Sequence[object] | None = None,
        fix: str | None = None,
    ) -> None:
        self.where = where
        self.column = column
        self.rows = list(rows) if rows is not None else []
        self.fix = fix
        parts = [message]
        if where:
            parts.append(f"where: {where}")
        if column:
            parts.append(f"column: {column}")
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:10])
            more = f" (and {len(self.rows) - 10} more)" if len(self.rows) > 10 else ""
            parts.append(f"rows: {shown}{more}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("; ".join(parts))


class SourceError(SmmdnError):
    """A data source could not be reached or returned a malformed payload (names the URL and setting)."""


class SourceUnreachable(SourceError):
    """The source did not answer in time, refused the connection or answered 429/5xx: retry later."""


class EnvironmentFault(SmmdnError):
    """The environment failed, not the data: database down, permission denied, disk full.

    Nothing was judged bad: whatever was being processed stays where it is and is retried next run.
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.fix = fix
        super().__init__(f"{message}; fix: {fix}" if fix else message)


class StoreUnavailable(EnvironmentFault):
    """The database cannot be reached, has no smmdn schema yet, or refused us for lack of rights."""


class DataRefused(InputError):
    """The database refused a value of the batch (a data error: the batch's file is rejected, not retried)."""


class CheckFailed(SmmdnError):
    """A check ran and failed (validation, a release whose rows still fail): exit code 1."""


class ModelError(SmmdnError):
    """Training or inference failed in a way the caller must handle (e.g. NaN loss: keep the old model)."""
