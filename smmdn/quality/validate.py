"""Validate a batch of observations or forcing: clean rows (with ``quality_flag``), quarantined rows
(with ``reason``), a per-expectation summary and Data Docs.

Outcomes, and why:
- *batch* failures (missing columns, empty batch, no usable row, values in percent) raise ``InputError``:
  nothing of such a batch may be written;
- *impossible* rows (unparseable, out of physical range, duplicate key, future time) are quarantined
  with their reasons, exactly as received, so an operator can inspect and release them;
- *suspicious* rows (spike, stuck sensor, long gap before) are kept with a ``quality_flag`` so anomaly
  detection can weigh them; every other kept row is ``ok``. Nothing is silently dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from smmdn.errors import InputError
from smmdn.quality import checks, ismn_flags
from smmdn.quality.coerce import add_reason, coerce_label, coerce_number, coerce_times
from smmdn.quality.gx import Spec, run_suite
from smmdn.quality.rules import ForcingRules, ObservationRules
from smmdn.schema import FORCING_KEY, OBSERVATION_COLUMNS, SERIES_KEY

FLAG_OK = "ok"
VWC_FRACTION_MEDIAN_MAX = 1.0  # a batch whose median vwc exceeds this is in percent: a unit error
SOURCE_FLAG_COLUMNS = ("ismn_flag", "provider_flag")  # a source's own flags, carried through verbatim
NON_VARIABLES = {"time", "site", "issue_time", "lead", "kind", "source", "quality_flag", "reason"}


@dataclass
class ValidationResult:
    """What validation decided for one batch (``table`` is ``observations`` or ``forcing``)."""

    table: str
    clean: pd.DataFrame
    quarantined: pd.DataFrame
    summary: dict[str, Any]
    data_docs: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        """True when no row was quarantined (flags on kept rows do not count as failure)."""
        return self.quarantined.empty


def _batch_error(message: str, where: str, fix: str, column: str | None = None,
                 rows: list[object] | None = None) -> InputError:
    return InputError(message, where=where, column=column, rows=rows, fix=fix)


def _check_batch(frame: Any, required: tuple[str, ...], where: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise _batch_error(f"expected a table, got {type(frame).__name__}", where, "pass a DataFrame")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise _batch_error(
            f"missing column(s) {', '.join(missing)}", where,
            f"provide columns {', '.join(required)} (found: {', '.join(map(str, frame.columns)) or 'none'})",
            column=", ".join(missing),
        )
    if frame.empty:
        raise _batch_error("empty batch: no rows", where, "send at least one row")
    return frame.reset_index(drop=True)


def _no_usable(reasons: pd.Series, where: str) -> InputError:
    common = Counter(r for rs in reasons for r in rs.split(";") if r).most_common(3)
    return _batch_error(
        "no usable row in the batch (" + ", ".join(f"{r}: {n}" for r, n in common) + ")", where,
        "check the file: times need YYYY-MM-DD or an offset (…Z / +00:00), values must be numbers",
        rows=list(reasons.index[:20]),
    )


def _dtype_summary(frame: pd.DataFrame, reasons: pd.Series) -> dict[str, Any]:
    """Our own type check (GX's type expectation misreads pandas extension dtypes)."""
    some = reasons[reasons != ""]
    bad = int(some.str.contains(r"_not_numeric|time_unparseable|time_naive", regex=True).sum()) if len(some) else 0
    return {
        "expectation": "smmdn_dtypes",
        "outcome": "quarantine",
        "success": bad == 0,
        "unexpected_count": bad,
        "observed_value": {str(c): str(t) for c, t in frame.dtypes.items()},
    }


def _reason_counts(reasons: pd.Series) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for rs in reasons[reasons != ""]:
        counts.update(r.split("(")[0] for r in rs.split(";"))
    return dict(sorted(counts.items()))


def _fmt(values: pd.Series) -> pd.Series:
    return values.map(lambda v: f"{v:.6g}" if pd.notna(v) else "nan")


# --------------------------------------------------------------------------------------------------
def validate_observations(
    frame: pd.DataFrame,
    rules: ObservationRules | None = None,
    *,
    now: pd.Timestamp | None = None,
    docs_dir: Path | None = None,
    history: pd.DataFrame | None = None,
    where: str = "observations",
) -> ValidationResult:
    """Validate canonical observations (``time, site, depth_cm, sensor, vwc``).

    ``history`` (already stored canonical rows of the same series) only gives the gap, spike and
    flatline checks their context across batch boundaries; it is never returned or re-validated.
    """
    rules = rules or ObservationRules()
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    orig = _check_batch(frame, OBSERVATION_COLUMNS, where)

    time, r_time = coerce_times(orig["time"])
    site, r_site = coerce_label(orig["site"], "site")
    sensor, r_sensor = coerce_label(orig["sensor"], "sensor")
    depth, r_depth = coerce_number(orig["depth_cm"], "depth_cm")
    vwc, r_vwc = coerce_number(orig["vwc"], "vwc")
    reasons = r_time
    for more in (r_site, r_depth, r_sensor, r_vwc):
        reasons = pd.Series(np.where(reasons == "", more, np.where(more == "", reasons, reasons + ";" + more)),
                            index=orig.index, dtype=object)
    bad_depth = depth.notna() & (depth <= 0)
    reasons = add_reason(reasons, bad_depth, "depth_cm_not_positive")
    depth = depth.where(~bad_depth)
    data = pd.DataFrame({"time": time, "site": site.astype(object), "depth_cm": depth,
                         "sensor": sensor.astype(object), "vwc": vwc}, index=orig.index)
    source_flags = [c for c in SOURCE_FLAG_COLUMNS if c in orig.columns]
    ismn_tokens = None
    if "ismn_flag" in source_flags:  # ISMN's verdict first: impossible there is impossible here
        ismn_level, ismn_tokens = ismn_flags.classify(orig["ismn_flag"])
        codes = orig["ismn_flag"].astype("string").fillna("").str.replace(" ", "", regex=False)
        reasons = add_reason(reasons, ismn_level == ismn_flags.QUARANTINE, "ismn_flag(" + codes + ")")
        reasons = add_reason(reasons, ismn_level == ismn_flags.MISSING, "ismn_value_missing(" + codes + ")")
    usable = reasons == ""
    if not usable.any():
        raise _no_usable(reasons, where)

    data["vwc_limit_ratio"] = checks.vwc_limit_ratio(data, rules)
    out_of_range = usable & ((data["vwc_limit_ratio"] < 0) | (data["vwc_limit_ratio"] > 1))
    limit = data["site"].map(rules.vwc_max_by_site).astype(np.float64).fillna(rules.vwc_max)
    if out_of_range.any():
        m = out_of_range
        reasons = add_reason(reasons, m, "vwc_out_of_range(" + _fmt(data.loc[m, "vwc"]) + " not in ["
                             + f"{rules.vwc_min:g}, " + _fmt(limit[m]) + "])")

    daily = checks.series_is_daily(data[usable]).reindex(data.index, fill_value=False).astype(bool)
    data["seconds_in_future"] = checks.seconds_in_future(data, now, rules.future_tolerance_s, daily)
    future = usable & (data["seconds_in_future"] > 0)
    reasons = add_reason(reasons, future, "future_time(after " + now.isoformat() + ")")

    extra, conflict = checks.duplicate_outcome(data, usable)
    reasons = add_reason(reasons, extra, "duplicate")
    reasons = add_reason(reasons, conflict, "duplicate_conflicting_values")
    data["input_step_s"] = checks.input_order_step(data.where(usable))

    quarantine = reasons != ""
    kept = data[~quarantine].drop(columns=["vwc_limit_ratio", "seconds_in_future", "input_step_s"])
    dyn = _dynamics(kept, history, rules)
    for col in dyn.columns:
        data[col] = dyn[col]

    specs = _observation_specs(rules) + (_ismn_specs() if "ismn_flag" in source_flags else [])
    gx_frame = data.drop(columns=[]).copy()
    for col in source_flags:
        gx_frame[col] = orig[col].astype("string").fillna("").astype(object)
    summary_exp, docs = run_suite(gx_frame, "observations", specs, docs_dir)
    summary_exp["dtypes"] = _dtype_summary(orig, reasons)
    unit = summary_exp.get("vwc_unit_fraction", {})
    if not unit.get("success", True):
        raise _batch_error(
            f"vwc looks like percent (median {unit.get('observed_value')}); nothing written", where,
            "give volumetric water content as a fraction (m3/m3): divide percent by 100", column="vwc",
        )

    flags = pd.Series("", index=kept.index, dtype=object)
    flags = add_reason(flags, dyn["spike_score"] > rules.spike_threshold, "spike")
    flags = add_reason(flags, dyn["flat_run_readings"] >= rules.flatline_min_readings, "flatline")
    flags = add_reason(flags, dyn["gap_steps"] > rules.max_gap_steps, "gap_before")
    if ismn_tokens is not None:
        flags = add_reason(flags, ismn_tokens[kept.index] != "", ismn_tokens[kept.index])
    flags = flags.str.replace(";", ",", regex=False).replace("", FLAG_OK)
    clean = kept.assign(quality_flag=flags)
    for col in source_flags:  # kept verbatim beside smmdn's own flag
        clean[col] = orig.loc[kept.index, col].astype("string").astype(object)
    clean = clean.sort_values([*SERIES_KEY, "time"], kind="stable").reset_index(drop=True)
    clean["site"] = clean["site"].astype("string")
    clean["sensor"] = clean["sensor"].astype("string")
    quarantined = orig[quarantine].assign(reason=reasons[quarantine])

    summary = {
        "table": "observations",
        "rows": len(orig),
        "clean": len(clean),
        "quarantined": len(quarantined),
        "flagged": int((clean["quality_flag"] != FLAG_OK).sum()),
        "flags": {str(k): int(v) for k, v in
                  clean.loc[clean["quality_flag"] != FLAG_OK, "quality_flag"].value_counts().items()},
        "quarantine_reasons": _reason_counts(reasons),
        "success": quarantined.empty,
        "expectations": summary_exp,
    }
    if "ismn_flag" in source_flags:
        summary["ismn_flags"] = ismn_flags.counts(orig["ismn_flag"])
    return ValidationResult("observations", clean, quarantined, summary, docs)


def _ismn_specs() -> list[Spec]:
    """ISMN's flags counted per family in Data Docs (the decisions themselves are made above)."""
    def not_matching(name: str, regex: str, outcome: str) -> Spec:
        return Spec(name, "ExpectColumnValuesToNotMatchRegex", {"column": "ismn_flag", "regex": regex}, outcome)

    return [
        not_matching("ismn_C01_C02_range", r"C0[12]", "quarantine"),
        not_matching("ismn_M_missing", r"(?:^|,)\s*M\s*(?:$|,)", "quarantine"),
        not_matching("ismn_C03_saturation", r"C03", "flag"),
        not_matching("ismn_D_geophysical", r"D(?:0[1-9]|10)", "flag"),
    ]


def _dynamics(kept: pd.DataFrame, history: pd.DataFrame | None, rules: ObservationRules) -> pd.DataFrame:
    """Gap/spike/flatline columns for kept rows, with stored history as context at the front."""
    frame = kept[[*SERIES_KEY, "time", "vwc"]].assign(_new=True)
    if history is not None and not history.empty:
        h = history[[*SERIES_KEY, "time", "vwc"]].copy()
        h["time"] = pd.to_datetime(h["time"], utc=True)
        h["site"] = h["site"].astype(object)
        h["sensor"] = h["sensor"].astype(object)
        h["depth_cm"] = h["depth_cm"].astype(np.float64)
        series = pd.MultiIndex.from_frame(frame[list(SERIES_KEY)].drop_duplicates())
        h = h[pd.MultiIndex.from_frame(h[list(SERIES_KEY)]).isin(series)]
        h = h.set_index(pd.RangeIndex(-len(h), 0)).assign(_new=False)
        frame = pd.concat([h, frame])
    ordered = frame.sort_values([*SERIES_KEY, "time", "_new"], kind="stable")
    dyn = checks.series_dynamics(ordered, rules)
    return dyn[ordered["_new"].to_numpy()].reindex(kept.index)


def _observation_specs(rules: ObservationRules) -> list[Spec]:
    key = [*SERIES_KEY, "time"]
    return [
        Spec("columns_present", "ExpectTableColumnsToMatchSet",
             {"column_set": list(OBSERVATION_COLUMNS), "exact_match": False}, "batch"),
        Spec("row_count", "ExpectTableRowCountToBeBetween", {"min_value": rules.min_rows}, "batch"),
        Spec("time_valid", "ExpectColumnValuesToNotBeNull", {"column": "time"}),
        Spec("site_present", "ExpectColumnValuesToNotBeNull", {"column": "site"}),
        Spec("depth_valid", "ExpectColumnValuesToNotBeNull", {"column": "depth_cm"}),
        Spec("sensor_present", "ExpectColumnValuesToNotBeNull", {"column": "sensor"}),
        Spec("vwc_numeric", "ExpectColumnValuesToNotBeNull", {"column": "vwc"}),
        Spec("vwc_unit_fraction", "ExpectColumnMedianToBeBetween",
             {"column": "vwc", "min_value": 0.0, "max_value": VWC_FRACTION_MEDIAN_MAX}, "batch"),
        Spec("vwc_within_limits", "ExpectColumnValuesToBeBetween",
             {"column": "vwc_limit_ratio", "min_value": 0.0, "max_value": 1.0}),
        Spec("unique_series_time", "ExpectCompoundColumnsToBeUnique",
             {"column_list": key, "ignore_row_if": "any_value_is_missing"}),
        Spec("no_future_times", "ExpectColumnValuesToBeBetween",
             {"column": "seconds_in_future", "max_value": 0.0}),
        Spec("time_monotonic_input", "ExpectColumnValuesToBeBetween",
             {"column": "input_step_s", "min_value": 0.0}, "info"),
        Spec("gap_before", "ExpectColumnValuesToBeBetween",
             {"column": "gap_steps", "max_value": rules.max_gap_steps}, "flag"),
        Spec("spike", "ExpectColumnValuesToBeBetween",
             {"column": "spike_score", "max_value": rules.spike_threshold}, "flag"),
        Spec("flatline", "ExpectColumnValuesToBeBetween",
             {"column": "flat_run_readings", "max_value": rules.flatline_min_readings - 1}, "flag"),
    ]


# --------------------------------------------------------------------------------------------------
def validate_forcing(
    frame: pd.DataFrame,
    rules: ForcingRules | None = None,
    *,
    now: pd.Timestamp | None = None,
    docs_dir: Path | None = None,
    where: str = "forcing",
) -> ValidationResult:
    """Validate wide forcing (``time, site, variables…``; an ``issue_time`` column joins the key)."""
    rules = rules or ForcingRules()
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    orig = _check_batch(frame, FORCING_KEY, where)
    variables = [c for c in orig.columns if c not in NON_VARIABLES]
    if not variables:
        raise _batch_error("no forcing variable columns", where,
                           "add numeric columns such as precipitation_sum, temperature_2m_mean")

    time, reasons = coerce_times(orig["time"])
    site, r_site = coerce_label(orig["site"], "site")
    reasons = add_reason(reasons, r_site != "", r_site)
    data = pd.DataFrame({"time": time, "site": site.astype(object)}, index=orig.index)
    key = ["site", "time"]
    if "issue_time" in orig.columns:
        data["issue_time"], r_issue = coerce_times(orig["issue_time"])
        reasons = add_reason(reasons, r_issue != "", "issue_" + r_issue)
        key.append("issue_time")
    for var in variables:
        data[var], r_var = coerce_number(orig[var], var)
        not_numeric = r_var.str.contains("_not_numeric", regex=False)
        reasons = add_reason(reasons, not_numeric, var + "_not_numeric")
    data["n_values"] = data[variables].notna().sum(axis=1).astype(np.float64)
    all_null = data["n_values"] == 0
    reasons = add_reason(reasons, all_null & (reasons == ""), "all_values_null")
    usable = reasons == ""
    if not usable.any():
        raise _no_usable(reasons, where)
    for var in variables:
        if var in rules.ranges:
            lo, hi = rules.ranges[var]
            bad = usable & ((data[var] < lo) | (data[var] > hi))
            if bad.any():
                reasons = add_reason(reasons, bad, f"{var}_out_of_range(" + _fmt(data.loc[bad, var])
                                     + f" not in [{lo:g}, {hi:g}])")
    if not rules.allow_future:
        midnight = data["time"] == data["time"].dt.normalize()
        daily = midnight.groupby(data["site"], dropna=False).transform("all").astype(bool)
        data["seconds_in_future"] = checks.seconds_in_future(data, now, rules.future_tolerance_s, daily)
        future = usable & (data["seconds_in_future"] > 0)
        reasons = add_reason(reasons, future, "future_time(after " + now.isoformat() + ")")
    dup_any = data[usable].duplicated(key, keep=False)
    if dup_any.any():
        d = data[usable][dup_any]
        nvals = d.groupby(key, dropna=False)[variables].transform("nunique").max(axis=1)
        conflict = pd.Series(False, index=data.index)
        conflict[d.index[nvals > 1]] = True
        same = d[nvals <= 1]
        extra = pd.Series(False, index=data.index)
        extra[same.index[same.duplicated(key, keep="first")]] = True
        reasons = add_reason(reasons, extra, "duplicate")
        reasons = add_reason(reasons, conflict, "duplicate_conflicting_values")

    specs = [
        Spec("columns_present", "ExpectTableColumnsToMatchSet",
             {"column_set": list(FORCING_KEY), "exact_match": False}, "batch"),
        Spec("row_count", "ExpectTableRowCountToBeBetween", {"min_value": rules.min_rows}, "batch"),
        Spec("time_valid", "ExpectColumnValuesToNotBeNull", {"column": "time"}),
        Spec("site_present", "ExpectColumnValuesToNotBeNull", {"column": "site"}),
        Spec("values_present", "ExpectColumnValuesToBeBetween", {"column": "n_values", "min_value": 1}),
        Spec("unique_site_time", "ExpectCompoundColumnsToBeUnique",
             {"column_list": key, "ignore_row_if": "any_value_is_missing"}),
    ]
    if not rules.allow_future:
        specs.append(Spec("no_future_times", "ExpectColumnValuesToBeBetween",
                          {"column": "seconds_in_future", "max_value": 0.0}))
    for var in variables:
        if var in rules.ranges:
            lo, hi = rules.ranges[var]
            specs.append(Spec(f"range_{var}", "ExpectColumnValuesToBeBetween",
                              {"column": var, "min_value": lo, "max_value": hi}))
            specs.append(Spec(f"unit_{var}", "ExpectColumnMedianToBeBetween",
                              {"column": var, "min_value": lo, "max_value": hi}, "batch"))
    summary_exp, docs = run_suite(data, "forcing", specs, docs_dir)
    summary_exp["dtypes"] = _dtype_summary(orig, reasons)
    unit_fail = [n for n, e in summary_exp.items() if n.startswith("unit_") and not e["success"]
                 and e.get("observed_value") is not None]
    if unit_fail:
        raise _batch_error(
            f"typical values outside the physical range for {', '.join(n[5:] for n in unit_fail)}: "
            "wrong unit?; nothing written", where,
            "use Open-Meteo units (degC, %, mm, W/m2 hourly, MJ/m2 daily sums, m/s)",
            column=", ".join(n[5:] for n in unit_fail),
        )

    quarantine = reasons != ""
    keep_cols = [*key, *variables]
    clean = data.loc[~quarantine, keep_cols].sort_values(["site", "time"], kind="stable").reset_index(drop=True)
    clean["site"] = clean["site"].astype("string")
    quarantined = orig[quarantine].assign(reason=reasons[quarantine])
    summary = {
        "table": "forcing",
        "rows": len(orig),
        "clean": len(clean),
        "quarantined": len(quarantined),
        "variables": variables,
        "quarantine_reasons": _reason_counts(reasons),
        "success": quarantined.empty,
        "expectations": summary_exp,
    }
    clean.attrs.update(frame.attrs)
    return ValidationResult("forcing", clean, quarantined, summary, docs)
