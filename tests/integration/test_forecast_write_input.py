"""Writing forecasts leaves the caller's frame as it was (the checks work on a shallow copy, issue 25)."""

from __future__ import annotations

import pandas as pd

from smmdn.store import Store
from tests.integration.test_store import SITES, forecast_frame


def test_write_forecasts_does_not_change_the_callers_frame(store: Store) -> None:
    store.upsert_sites(SITES)
    frame = forecast_frame()
    frame["issue_time"] = frame["issue_time"].dt.strftime("%Y-%m-%d")  # text times: the checks parse them
    frame["lead"] = frame["lead"].astype(float)  # the write casts lead to int
    before = frame.copy(deep=True)
    run = store.start_forecast_run("2020-06-05", "m1")
    assert store.write_forecasts(frame, run_id=run, model_version="m1").inserted == len(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert "model_version" not in frame and "run_id" not in frame
