"""Create or update the automations in automations.yaml (``python automations.py automations.yaml``).

Why a script: Prefect's CLI can list/pause automations but not create them from a file; the Python
API can, so the YAML stays the reviewed source of truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def build(spec: dict) -> object:
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    trig = dict(spec["trigger"])
    trig.pop("type", None)
    trigger = EventTrigger(
        posture=Posture(trig.pop("posture")), expect=set(trig.pop("expect", [])), after=set(trig.pop("after", [])),
        match=trig.pop("match", {}), match_related=trig.pop("match_related", {}),
        for_each=set(trig.pop("for_each", [])),
        threshold=trig.pop("threshold", 1), within=trig.pop("within", 0),
    )
    block_id = _block_id(spec.get("block"))
    actions = [SendNotification(block_document_id=block_id, subject=spec["subject"], body=spec["body"])] if block_id \
        else []
    return Automation(name=spec["name"], description=spec.get("description", ""), enabled=bool(actions),
                      trigger=trigger, actions=actions or [_pause_placeholder()])


def _block_id(name: str | None) -> object | None:
    if not name:
        return None
    from prefect.blocks.core import Block

    for slug in ("slack-webhook", "email-server-credentials", "custom-webhook", "apprise"):
        try:
            return Block.load(f"{slug}/{name}")._block_document_id
        except (ValueError, KeyError):
            continue
    return None


def _pause_placeholder() -> object:
    from prefect.events.actions import DoNothing

    return DoNothing()


def main(path: str) -> int:
    from prefect.automations import Automation

    specs = yaml.safe_load(Path(path).read_text())["automations"]
    for spec in specs:
        auto = build(spec)
        try:
            existing = Automation.read(name=spec["name"])
        except ValueError:
            existing = None
        if existing:
            existing.delete()
        auto.create()
        print(f"automation {spec['name']}: {'enabled' if auto.enabled else 'created disabled (no notification block)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
