"""Errors that carry what a user needs to fix bad input: where, what, which rows, and the fix."""

from __future__ import annotations

from collections.abc import Sequence


class SmmdnError(Exception):
    """Base class of every error smmdn raises on purpose (the CLI prints these without a traceback)."""


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


class ModelError(SmmdnError):
    """Training or inference failed in a way the caller must handle (e.g. NaN loss: keep the old model)."""
