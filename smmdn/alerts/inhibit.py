"""Inhibition: one alert mutes others that share its cause (Alertmanager's ``inhibit_rules``), as data.

Rules live under ``inhibit_rules:`` in the routes file (``SMMDN_ALERT_ROUTES_FILE``); without that key the
defaults below apply, ``inhibit_rules: []`` turns inhibition off::

    inhibit_rules:
      - name: logger-down                       # every sensor of a logger missing: its sensors' alerts wait
        source: {kinds: [site_silent]}
        target: {kinds: [missing, deviation, sensor_fault, flatline, cluster]}
        equal: [site]

A *source* alert that is active (open or acknowledged) mutes every active *target* alert that matches the
target kinds and has the same values for every field in ``equal`` (``site``, ``depth_cm``, ``sensor``).
An alert never inhibits itself; when a rule's target kind is also one of its source kinds, only an alert
raised by an earlier run mutes a later one (two raised by the same run are independent findings), so two
alerts never mute each other.
Inhibited alerts stay open and listed (``smmdn alerts show`` says why); they add no message of their own
to their incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from smmdn.errors import InputError

FIELDS = ("site", "depth_cm", "sensor")
SENSOR_KINDS = ("missing", "deviation", "sensor_fault", "flatline", "cluster")


class _Match(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kinds: list[str] = Field(min_length=1)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    source: _Match
    target: _Match
    equal: list[str] = Field(default_factory=list)
    description: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    equal: tuple[str, ...]
    description: str = ""

    def mutes(self, source: dict[str, Any], target: dict[str, Any]) -> bool:
        if source.get("id") == target.get("id") or source["kind"] not in self.sources:
            return False
        if target["kind"] not in self.targets:
            return False
        if target["kind"] in self.sources and not _earlier(source, target):
            return False  # the same family: the first one raised explains the later ones, never both ways
        return all(_same(source[f], target[f]) for f in self.equal)


def _earlier(source: dict[str, Any], target: dict[str, Any]) -> bool:
    """``source`` was raised by an earlier run than ``target`` (two raised by one run are independent
    findings: neither explains the other)."""
    a, b = source.get("created_at"), target.get("created_at")
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return int(source["id"]) < int(target["id"])
    return bool(pd.Timestamp(a) < pd.Timestamp(b))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) or isinstance(b, int | float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


DEFAULT_RULES = (
    Rule("logger-down", ("site_silent",), SENSOR_KINDS, ("site",),
         "every sensor of the logger is missing: the logger, not the probes"),
    Rule("sensor-fault-siblings", ("sensor_fault", "flatline"), ("deviation", "cluster"), ("site", "depth_cm"),
         "an attributed sensor fault explains its siblings' and its cluster's deviations at that depth"),
    Rule("sensor-fault-first", ("sensor_fault", "flatline"), ("sensor_fault", "flatline"), ("site", "depth_cm"),
         "the first sensor fault at a depth explains later fault calls on its siblings (their reference is "
         "bent by the faulty probe); a later one speaks if it outlasts the first"),
    Rule("cluster-event", ("cluster",), ("deviation",), ("site", "depth_cm"),
         "a cluster event explains the sensor deviations at that depth while it lasts"),
    Rule("sensor-missing", ("missing",), ("cluster",), ("site", "depth_cm"),
         "a replicate missing at a depth leaves the consensus there to the others: their cluster call is the "
         "missing sensor's story (an event that is real reaches the other depths, which still speak)"),
)


def parse_rules(data: Any, where: str) -> tuple[Rule, ...]:
    """The ``inhibit_rules:`` list of a routes file (None: the defaults); errors name the file and the rule."""
    if data is None:
        return DEFAULT_RULES
    if not isinstance(data, list):
        raise InputError("inhibit_rules must be a list of rules", where=where, column="inhibit_rules",
                         fix="write inhibit_rules: as a YAML list (see docs/alerts-for-operators.md)")
    rules: list[Rule] = []
    for index, item in enumerate(data):
        label = item.get("name") if isinstance(item, dict) and item.get("name") else f"#{index + 1}"
        try:
            spec = _Rule.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise InputError(f"inhibit rule {label}: {first['msg']}", where=where,
                             column=f"inhibit_rules[{index}].{path}",
                             fix="each rule needs name, source: {kinds: […]}, target: {kinds: […]}, "
                                 f"and optionally equal: a subset of {', '.join(FIELDS)}") from exc
        bad = sorted(set(spec.equal) - set(FIELDS))
        if bad:
            raise InputError(f"inhibit rule {label}: cannot compare {', '.join(bad)}", where=where,
                             column=f"inhibit_rules[{index}].equal", fix=f"use fields of {', '.join(FIELDS)}")
        if spec.name in {r.name for r in rules}:
            raise InputError(f"inhibit rule {label} is defined twice", where=where,
                             column=f"inhibit_rules[{index}].name", fix="give every rule its own name")
        rules.append(Rule(spec.name, tuple(spec.source.kinds), tuple(spec.target.kinds), tuple(spec.equal),
                          spec.description or ""))
    return tuple(rules)


def inhibitions(active: list[dict[str, Any]], rules: tuple[Rule, ...]) -> dict[int, tuple[int, Rule]]:
    """For every active alert muted by another: (the muting alert's id, the rule). Sources that are
    themselves inhibited still mute (a silent logger mutes its sensors' missing alerts and what they mute)."""
    out: dict[int, tuple[int, Rule]] = {}
    for target in active:
        for rule in rules:
            source = next((s for s in active if rule.mutes(s, target)), None)
            if source is not None:
                out[int(target["id"])] = (int(source["id"]), rule)
                break
    return out
