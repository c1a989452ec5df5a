"""``train`` flow: full retrain or fine-tune, judged on the held-out window (deployed on the ``gpu`` pool).

The daily cycle calls it with ``run_deployment`` when it runs as a deployment (so training lands on a
GPU worker, concurrency 1) and in-process when run locally, as a task run of the same function
(``train_task``). Either way the result is the persisted ``TrainOutcome`` dict, and the model artifact lives
on shared storage (``SMMDN_SHARED_STORAGE_URL``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows import common

TRAIN_TIMEOUT_S = 4 * 3600
TRAIN_DEPLOYMENT = "train/train"


@flow(name="train", flow_run_name=common.run_name("train", "day", "kind"), timeout_seconds=TRAIN_TIMEOUT_S,
      persist_result=True)
def train(day: str | None = None, kind: str = "fine-tune", history_days: int = 730, train_overrides: dict | None = None,
          replay: bool = False) -> dict[str, Any]:
    """Train a ``kind`` challenger for issue ``day`` and promote it only if it beats the champion."""
    from smmdn.cycle.champion import train_and_judge
    from smmdn.cycle.day import resolve_day
    from smmdn.cycle.inputs import load_inputs
    from smmdn.model.train import pick_device

    log = common.logger()
    cfg = common.settings()
    db = common.store(cfg)
    cycle = resolve_day(day, cfg, replay=replay)
    inputs = load_inputs(db, cfg, cycle, history_days=history_days)
    device = str(pick_device((train_overrides or {}).get("device", "auto")))
    log.info("training %s for %s on %s (%d observation rows)", kind, cycle.issue.date(), device,
             len(inputs.observations))
    outcome = train_and_judge(db, cfg, inputs, cycle, kind, train_overrides).to_dict()
    outcome["device"] = device
    return outcome


# Run locally (no deployment), the daily cycle trains in a task run (``train-<day>-<kind>``), not a subflow.
train_task = task(name="train", task_run_name=common.run_name("train", "day", "kind", task=True),
                  timeout_seconds=TRAIN_TIMEOUT_S, persist_result=True)(train.fn)


def run_train(parameters: dict[str, Any], *, remote: bool | None = None,
              deployment: str = TRAIN_DEPLOYMENT) -> dict[str, Any]:
    """Train on the GPU pool (as a deployment) or in-process as a task run; returns the ``TrainOutcome`` dict."""
    from prefect.runtime import deployment as runtime

    remote = runtime.id is not None if remote is None else remote
    if not remote:
        return train_task(**parameters)
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name=deployment, parameters=parameters, timeout=TRAIN_TIMEOUT_S)
    state = flow_run.state
    if state is None or not state.is_completed():
        raise RuntimeError(f"train deployment run {flow_run.name} ended {state.type if state else 'unknown'}: "
                           f"{state.message if state else ''}")
    return state.result()
