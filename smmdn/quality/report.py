"""Write a validation report directory: ``summary.json``, ``quarantine.csv`` and Data Docs.

This layout is a stable contract (``smmdn validate``): outside checks read it. Add keys, never rename.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from smmdn.quality.validate import ValidationResult

EXIT_OK, EXIT_QUARANTINED, EXIT_BATCH = 0, 1, 2


def exit_code(results: list[ValidationResult]) -> int:
    return EXIT_OK if all(r.success for r in results) else EXIT_QUARANTINED


def quarantine_frame(results: list[ValidationResult]) -> pd.DataFrame:
    """All quarantined rows: ``table``, ``line`` (line in the input CSV), the row as received, ``reason``."""
    parts = []
    for r in results:
        q = r.quarantined.copy()
        q.insert(0, "line", q.index.to_numpy() + 2)  # header is line 1
        q.insert(0, "table", r.table)
        parts.append(q)
    if not parts or all(p.empty for p in parts):
        return pd.DataFrame(columns=["table", "line", "reason"])
    frame = pd.concat(parts, ignore_index=True)
    cols = [c for c in frame.columns if c != "reason"] + ["reason"]
    return frame[cols]


def write_report(
    directory: Path, results: list[ValidationResult], *, error: str | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write the report; returns the summary that went into ``summary.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    code = EXIT_BATCH if error else exit_code(results)
    summary: dict[str, Any] = {
        "success": code == EXIT_OK,
        "exit_code": code,
        "error": error,
        "inputs": inputs or {},
        "data_docs": next((r.data_docs for r in results if r.data_docs), None),
    }
    for r in results:
        summary[r.table] = r.summary
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    quarantine_frame(results).to_csv(directory / "quarantine.csv", index=False)
    return summary
