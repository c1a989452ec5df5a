"""``validate`` flow: what this cycle's Great Expectations runs found (validation itself happens at ingest).

Why no second validation pass: ingest validates every batch before writing (clean rows stored, bad rows
quarantined, suspicious rows flagged); this step collects those verdicts into the cycle's status,
which the forecast run records and the summary artifact shows with the Data Docs location.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows import common


@flow(name="validate", flow_run_name=common.run_name("validate"), timeout_seconds=600, persist_result=True)
def validate(after_id: int = 0, day: str | None = None) -> dict[str, Any]:
    """The verdicts recorded since validation run ``after_id``; ``day`` (the issue day) names the run."""
    from smmdn.cycle.inputs import validation_status

    log = common.logger()
    status = validation_status(common.store(), after_id)
    (log.warning if status["status"] == "issues" else log.info)("validation: %s", status)
    return status


# The daily cycle's validate step: the same function as a task run (``validate-<day>``), not a subflow.
validate_task = task(name="validate", task_run_name=common.run_name("validate", task=True), timeout_seconds=600,
                     persist_result=True)(validate.fn)
