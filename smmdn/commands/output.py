"""How list and show commands print: a table with a header line for people, ``--json`` records for scripts.

One home for both so every command follows the same convention: JSON is a list of objects (one per row;
``show`` prints one object), times in ISO 8601 UTC, missing values as null."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="JSON instead of a table (for scripts)")


def jsonable(value: Any) -> Any:
    """Plain JSON values: ISO times, null for NaN/NaT, lists for arrays and tuples."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "isoformat"):
        try:
            import pandas as pd

            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def print_json(data: Any) -> None:
    print(json.dumps(jsonable(data), indent=1, ensure_ascii=False))


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[Column]) -> None:
    """Columns as wide as their widest cell, a header line first; ``-`` for missing cells."""
    cells = [[_cell(get(row)) for _, get in columns] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    value = jsonable(value)
    if value is None or value == "":
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
