"""Checks and conversions between canonical pandas frames and table rows.

Every check raises ``InputError`` naming the table, column, offending rows and the fix, before any
row is written, so bad input never leaves a partial batch behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from smmdn.errors import InputError
from smmdn.schema import n_components, normalise_observations, parse_times, require_columns


def to_python(series: pd.Series) -> list[object]:
    """Column values as Python objects (NaN/NaT → None, timestamps → aware UTC datetimes)."""
    if pd.api.types.is_datetime64_dtype(series.dtype):
        series = series.dt.tz_localize("UTC")  # naive datetimes inside the store are UTC
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        utc = series.dt.tz_convert("UTC")
        values = utc.array.to_pydatetime().tolist()
        missing = utc.isna().to_numpy()
        if missing.any():
            return [None if gone else v for v, gone in zip(values, missing, strict=True)]
        return values
    if pd.api.types.is_float_dtype(series.dtype):
        arr = series.to_numpy(dtype=np.float64)
        out = arr.tolist()
        if np.isnan(arr).any():
            return [None if v != v else v for v in out]
        return out
    if pd.api.types.is_integer_dtype(series.dtype):
        return series.astype("int64").tolist()
    values = series.tolist()
    missing = series.isna().to_numpy()  # element-wise; list/dict cells count as present
    if missing.any():
        return [None if gone else v for v, gone in zip(values, missing, strict=True)]
    return values


def rows_of(frame: pd.DataFrame, columns: Sequence[str]) -> list[tuple[object, ...]]:
    return list(zip(*(to_python(frame[c]) for c in columns), strict=True))


def reject_duplicates(frame: pd.DataFrame, key: Sequence[str], table: str) -> None:
    dup = frame.duplicated(list(key), keep=False)
    if dup.any():
        raise InputError(
            "duplicate keys inside one batch",
            where=table,
            column=", ".join(key),
            rows=list(frame.index[dup][:20]),
            fix="send each key once per batch (deduplicate, or quarantine the extra rows)",
        )


def reject_null_keys(frame: pd.DataFrame, key: Sequence[str], table: str) -> None:
    for column in key:
        bad = frame[column].isna()
        if bad.any():
            raise InputError(
                "NaN or empty key values",
                where=table,
                column=column,
                rows=list(frame.index[bad][:20]),
                fix=f"every row needs {column}",
            )


def observations_for_write(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical observations checked for the store (units, keys, duplicates)."""
    out = normalise_observations(frame, where="observations")
    reject_null_keys(out, ("time", "site", "depth_cm", "sensor"), "observations")
    missing = out["vwc"].isna()
    if missing.any():
        raise InputError(
            "missing vwc values",
            where="observations",
            column="vwc",
            rows=list(out.index[missing][:20]),
            fix="drop readings that are missing at the source before writing; quarantine malformed ones",
        )
    negative = out["vwc"] < 0
    if negative.any():
        raise InputError(
            "vwc below 0 m3/m3",
            where="observations",
            column="vwc",
            rows=list(out.index[negative][:20]),
            fix="impossible values belong in quarantine (validation does this); check the sensor calibration",
        )
    reject_duplicates(out, ("site", "depth_cm", "sensor", "time"), "observations")
    if "quality_flag" not in out.columns:
        out["quality_flag"] = "ok"
    out["quality_flag"] = out["quality_flag"].fillna("ok").astype(str)
    for column in ("ismn_flag", "provider_flag"):  # the source's own flags: text, NULL where absent
        if column in out.columns:
            text = out[column].astype("string").str.strip()
            out[column] = text.where(text.notna() & (text != ""), None).astype(object)
    return out


def forcing_long_for_write(frame: pd.DataFrame, issue_time: datetime | None) -> pd.DataFrame:
    """Wide canonical forcing → long rows (time, site, variable, value), NaN values omitted."""
    require_columns(frame, ("time", "site"), "forcing")
    out = frame.copy()
    out["time"] = parse_times(out["time"], "forcing")
    reject_null_keys(out, ("time", "site"), "forcing")
    out["site"] = out["site"].astype(str)
    per_row_issue = "issue_time" in out.columns
    if per_row_issue:
        out["issue_time"] = parse_times(out["issue_time"], "forcing", "issue_time")
    key = ["site", "time", *(["issue_time"] if per_row_issue else [])]
    reject_duplicates(out, key, "forcing")
    variables = [c for c in out.columns if c not in ("time", "site", "issue_time")]
    non_numeric = [c for c in variables if not pd.api.types.is_numeric_dtype(out[c])]
    if non_numeric:
        raise InputError(
            "non-numeric forcing variables",
            where="forcing",
            column=", ".join(non_numeric),
            fix="forcing columns after time and site must be numbers (drop text columns)",
        )
    if not variables:
        raise InputError("no forcing variables", where="forcing", fix="add at least one numeric column")
    long = out.melt(id_vars=key, value_vars=variables, var_name="variable", value_name="value")
    long = long[long["value"].notna()]
    if not per_row_issue and issue_time is not None:
        long["issue_time"] = (
            pd.Timestamp(issue_time).tz_convert("UTC")
            if pd.Timestamp(issue_time).tzinfo
            else pd.Timestamp(issue_time, tz="UTC")
        )
    return long.reset_index(drop=True)


FORECAST_REQUIRED = (
    "site",
    "depth_cm",
    "issue_time",
    "valid_time",
    "lead",
    "mean",
    "sd",
    "q05",
    "q25",
    "q50",
    "q75",
    "q95",
)


def forecasts_for_write(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Forecast frame checked (mixture valid, keys unique, times UTC); returns it and K."""
    require_columns(frame, FORECAST_REQUIRED, "forecasts")
    k = n_components(frame)
    if k == 0:
        raise InputError(
            "no mixture columns",
            where="forecasts",
            column="weight_0..",
            fix="give weight_k, mean_k, sigma_k for k = 0..K-1",
        )
    require_columns(frame, [f"{p}_{i}" for p in ("weight", "mean", "sigma") for i in range(k)], "forecasts")
    out = frame.copy(deep=False)  # columns are only ever replaced (never written into): the caller's frame stays
    out["issue_time"] = parse_times(out["issue_time"], "forecasts", "issue_time")
    out["valid_time"] = parse_times(out["valid_time"], "forecasts", "valid_time")
    reject_null_keys(out, ("site", "depth_cm", "issue_time", "valid_time"), "forecasts")
    weights = out[[f"weight_{i}" for i in range(k)]].to_numpy(dtype=float)
    sigmas = out[[f"sigma_{i}" for i in range(k)]].to_numpy(dtype=float)
    means = out[[f"mean_{i}" for i in range(k)]].to_numpy(dtype=float)
    bad = ~np.isfinite(weights).all(1) | ~np.isfinite(means).all(1) | ~np.isfinite(sigmas).all(1)
    bad |= (np.abs(weights.sum(1) - 1.0) > 1e-3) | (sigmas <= 0).any(1) | (weights < 0).any(1)
    if bad.any():
        raise InputError(
            "invalid mixtures (weights must be ≥ 0 and sum to 1, sigmas > 0, all finite)",
            where="forecasts",
            column="weight_k/mean_k/sigma_k",
            rows=list(out.index[bad][:20]),
            fix="write the model's mixture parameters unchanged",
        )
    key = ["site", "depth_cm", "valid_time", "issue_time"]
    if "model_version" in out.columns:
        key.append("model_version")
    reject_duplicates(out, key, "forecasts")
    return out, k


def expand_mixture(frame: pd.DataFrame) -> pd.DataFrame:
    """List columns weights/means/sigmas → weight_k/mean_k/sigma_k columns (canonical forecast CSV)."""
    if frame.empty:
        return frame.drop(columns=["weights", "means", "sigmas"], errors="ignore")
    out = frame.copy()
    for source, prefix in (("weights", "weight"), ("means", "mean"), ("sigmas", "sigma")):
        values = np.array([np.asarray(v, dtype=float) for v in out[source]])
        for i in range(values.shape[1]):
            out[f"{prefix}_{i}"] = values[:, i]
        out = out.drop(columns=source)
    return out
