"""Release quarantined rows: re-validate them with today's rules and write those that now pass.

Why re-validate: a release is a decision ("the 0.85 at this clay site is real", "that future time was
a clock error now fixed upstream"), not a bypass; rows still impossible under the given rules stay in
quarantine. Writing the rows and marking them released happen in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.errors import InputError
from smmdn.quality.rules import ForcingRules, ObservationRules

if TYPE_CHECKING:
    from smmdn.store import Store


@dataclass
class ReleaseOutcome:
    released: list[int] = field(default_factory=list)
    still_rejected: dict[int, str] = field(default_factory=dict)
    unknown: list[int] = field(default_factory=list)
    written: int = 0

    def line(self) -> str:
        text = f"released {len(self.released)} row(s), wrote {self.written}"
        if self.still_rejected:
            text += f"; still rejected {len(self.still_rejected)}: " + "; ".join(
                f"{i}: {r}" for i, r in list(self.still_rejected.items())[:10])
        if self.unknown:
            text += f"; not open in quarantine: {', '.join(map(str, self.unknown))}"
        return text


def release_rows(
    store: Store,
    ids: Sequence[int],
    *,
    rules: ObservationRules | None = None,
    forcing_rules: ForcingRules | None = None,
    released_by: str = "operator",
    now: pd.Timestamp | None = None,
) -> ReleaseOutcome:
    from smmdn.quality.validate import validate_forcing, validate_observations

    wanted = [int(i) for i in ids]
    open_rows = store.list_quarantine(released=False)
    open_rows = open_rows[open_rows["id"].isin(wanted)]
    outcome = ReleaseOutcome(unknown=sorted(set(wanted) - set(open_rows["id"].astype(int))))
    if outcome.unknown:  # a typo must not release the other ids half-way: nothing is released
        raise InputError(f"not open in quarantine: {', '.join(map(str, outcome.unknown))}", where="quarantine",
                         rows=outcome.unknown, fix="pick ids from `smmdn quarantine list`; nothing was released")
    writes: list[tuple[str, str, pd.DataFrame, dict[str, Any]]] = []
    for (table, source), group in open_rows.groupby(["table_name", "source"]):
        qids = [int(i) for i in group["id"]]
        frame = pd.DataFrame(list(group["row"]))  # validation numbers rows 0..n-1: map back via qids
        frame = frame.drop(columns=[c for c in ("line", "raw", "quality_flag") if c in frame.columns])
        try:
            if table == "observations":
                result = validate_observations(frame, rules, now=now, where=f"release {source}")
                extra: dict[str, Any] = {}
            else:
                kind = str(frame["kind"].iloc[0]) if "kind" in frame else "observed"
                result = validate_forcing(frame.drop(columns=["kind"], errors="ignore"),
                                          forcing_rules or ForcingRules(allow_future=kind == "forecast"),
                                          now=now, where=f"release {source}")
                extra = {"kind": kind}
        except InputError as exc:
            outcome.still_rejected.update({int(i): str(exc) for i in group["id"]})
            continue
        for pos, reason in result.quarantined["reason"].items():
            outcome.still_rejected[qids[int(pos)]] = str(reason)
        passed = [q for q in qids if q not in outcome.still_rejected]
        if passed:
            writes.append((table, source, result.clean, extra))
            outcome.released.extend(passed)
    if not outcome.released:
        return outcome
    with store.transaction() as tx:
        for table, source, clean, extra in writes:
            if table == "observations":
                outcome.written += tx.write_observations(clean, source=source).written
            else:
                outcome.written += tx.write_forcing(clean, source=source, kind=extra["kind"]).written
        tx.release_quarantine(outcome.released, released_by=released_by)
    return outcome
