"""The daily cycle on PostgreSQL with a poisoned landing directory: a non-finite cell and a file that is not
TOA5 at all. The day still forecasts and detects for every site (issue 18: one inf stopped the network)."""

from __future__ import annotations

import os
import time

import pytest

from tests.flows.conftest import HISTORY, Ops, run_daily

pytestmark = [pytest.mark.prefect, pytest.mark.postgres]


def test_one_bad_file_does_not_stop_the_day(ops: Ops) -> None:
    from smmdn.config import get_settings

    landing = get_settings().path("landing")
    files = sorted(landing.glob("*.dat"))
    lines = files[0].read_text().splitlines()
    for line, column, cell in ((4, 2, "Infinity"), (5, 3, "1e999")):  # mapped vwc columns of two records
        fields = lines[line].split(",")
        fields[column] = cell
        lines[line] = ",".join(fields)
    files[0].write_text("\r\n".join(lines))
    (landing / "garbage.dat").write_text("this is not a logger file\n")
    for path in (files[0], landing / "garbage.dat"):
        os.utime(path, (time.time() - 3600,) * 2)

    summary = run_daily(ops, HISTORY)
    rows = summary["ingest"]["summaries"]
    assert any(r["status"] == "rejected" and r["key"] == "garbage.dat" for r in rows), rows
    assert not summary["ingest"]["failed"]
    fc = summary["forecast"]
    assert fc["status"] == "complete" and fc["series"] == 2 * 3, fc  # every site forecast
    store = ops.store()
    q = store.list_quarantine(table="observations")
    assert q["reason"].str.contains("non-finite").sum() >= 1
    assert (landing / "rejected" / "garbage.dat.reason.txt").exists()
    assert not list(landing.glob("*.dat"))  # nothing left behind to fail the next run
