"""Row-level coercion of incoming frames: every unusable cell becomes a per-row reason, not an exception.

Why per row: one bad line in a logger file or CSV must not sink the whole batch; the batch only fails
when nothing in it is usable (see ``smmdn.quality.validate``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ZONE_RE = r"(?:Z|[+-]\d{2}:?\d{2})$"
DATE_RE = r"\d{4}-\d{2}-\d{2}"


def add_reason(reasons: pd.Series, mask: pd.Series | np.ndarray, text: str | pd.Series) -> pd.Series:
    """Append ``text`` to the reasons of rows in ``mask`` (reasons are ``;``-separated)."""
    mask = pd.Series(np.asarray(mask, dtype=bool), index=reasons.index)
    if not mask.any():
        return reasons
    if isinstance(text, pd.Series):
        piece = text.reindex(reasons.index)[mask]
    else:
        piece = pd.Series(text, index=reasons.index)[mask]
    current = reasons[mask]
    reasons = reasons.copy()
    reasons[mask] = np.where(current == "", piece, current + ";" + piece)
    return reasons


def coerce_times(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """UTC instants plus a reason per unusable row (missing, naive clock time, unparseable)."""
    reasons = pd.Series("", index=values.index, dtype=object)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
        return parsed, add_reason(reasons, parsed.isna(), "time_missing")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        naive_clock = values.notna() & (values != values.dt.normalize())
        parsed = values.dt.tz_localize("UTC").where(~naive_clock)
        reasons = add_reason(reasons, values.isna(), "time_missing")
        return parsed, add_reason(reasons, naive_clock, "time_naive")
    text = values.astype("string").str.strip()
    missing = (text.isna() | (text == "")).fillna(True).astype(bool)
    is_date = text.str.fullmatch(DATE_RE).fillna(False).astype(bool)
    has_zone = text.str.contains(ZONE_RE, regex=True).fillna(False).astype(bool)
    clock = text.str.match(r"\d{4}-\d{2}-\d{2}[T ]\d").fillna(False).astype(bool)
    naive = ~missing & ~is_date & ~has_zone & clock
    unzoned_other = ~missing & ~is_date & ~has_zone & ~clock
    usable = ~missing & ~naive & ~unzoned_other
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if usable.any():
        parsed[usable] = pd.to_datetime(text[usable], utc=True, errors="coerce", format="ISO8601")
    bad = (usable & parsed.isna()) | unzoned_other
    reasons = add_reason(reasons, missing, "time_missing")
    reasons = add_reason(reasons, naive, "time_naive")
    reasons = add_reason(reasons, bad, "time_unparseable")
    return parsed, reasons


def coerce_number(values: pd.Series, name: str) -> tuple[pd.Series, pd.Series]:
    """float64 values plus reasons: ``<name>_missing`` (empty) or ``<name>_not_numeric`` (text)."""
    reasons = pd.Series("", index=values.index, dtype=object)
    if pd.api.types.is_bool_dtype(values.dtype):
        numbers = pd.Series(np.nan, index=values.index)
        return numbers, add_reason(reasons, np.ones(len(values), bool), f"{name}_not_numeric")
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype(np.float64)
        absent = numbers.isna()
    else:
        text = values.astype("string").str.strip()
        absent = (text.isna() | (text == "") | text.str.upper().isin(["NAN", "NA", "NULL"])).fillna(True)
        numbers = pd.to_numeric(text.where(~absent), errors="coerce").astype(np.float64)
    infinite = np.isinf(numbers.to_numpy())
    numbers = numbers.where(~infinite)
    not_numeric = numbers.isna() & ~absent.astype(bool)
    reasons = add_reason(reasons, absent.astype(bool), f"{name}_missing")
    reasons = add_reason(reasons, not_numeric, f"{name}_not_numeric")
    return numbers, reasons


def coerce_label(values: pd.Series, name: str) -> tuple[pd.Series, pd.Series]:
    """Non-empty string labels (site, sensor) plus reasons for missing ones.

    Labels repeat a lot (one site id per row), so the work is done once per distinct value.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cleaned = pd.Series(uniques, dtype=object).map(lambda v: str(v).strip()).replace("", None)
    lookup = np.append(cleaned.to_numpy(dtype=object), None)  # code -1 (NA) → None
    text = pd.Series(lookup[codes], index=values.index, dtype=object)
    missing = text.isna()
    reasons = add_reason(pd.Series("", index=values.index, dtype=object), missing, f"{name}_missing")
    return text.astype("string"), reasons
