"""The routing table: which teams hear about an alert, and where each team's messages go.

``SMMDN_ALERT_ROUTES_FILE`` (YAML)::

    teams:
      plains-field:
        urls: [env:SMMDN_ROUTE_PLAINS]          # apprise URL, env:NAME or secret:<Prefect Secret block>
        escalate_to: plains-lead                # optional: who hears about unacknowledged alerts
      plains-lead: {urls: ["mailto://…"]}
      ops: {urls: [env:SMMDN_ROUTE_OPS]}
    routes:                                     # every matching route adds its teams
      - {tags: [team:plains], teams: [plains-field]}
      - {sites: ["NE_*"], kinds: [cluster], teams: [ops]}
    operators: [ops]                            # calibration drift and other system messages
    notify:                                     # defaults for every team (each team may override them)
      group_wait: 0h          # after an incident opens; 0 = the end of the daily cycle that found it
      group_interval: 12h     # least time between two updates of one incident (new member, escalation…)
      repeat_interval: 24h    # first reminder of an unchanged, unacknowledged incident…
      repeat_max: 7d          # …then doubling up to this
      digest: …               # true: one daily digest instead of reminders; default true for the teams that
                              # own incidents (in routes: or operators:), false for escalation-only and default
      send_resolved: true
      resolve_hold: 48h       # a resolution waits this long; a member back within it keeps the incident open
    inhibit_rules: […]                          # smmdn.alerts.inhibit (defaults when absent)

A route matches a site when any of its ``tags`` is among the site's tags (from the registry) or any
of its ``sites`` patterns (shell-style) matches the site id, and, if ``kinds`` is given, the alert kind
is listed; a route with neither tags nor sites matches every site. No match (or no routes file): the
``default`` team, i.e. the URLs in ``SMMDN_APPRISE_URLS``.

Messages store a *target* (``team#index``), never a URL: URLs (which carry tokens) are resolved at send
time, so rotating a token needs no database change and no secret lands in the outbox. ``secret:NAME``
references are resolved by a ``SecretResolver`` the caller injects (the flows and the CLI pass one that
reads Prefect Secret blocks, ``flows/secrets.py``): the library does not know where secrets live.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from smmdn.alerts.inhibit import DEFAULT_RULES, Rule, parse_rules
from smmdn.config import Settings
from smmdn.display import DEFAULT_VWC_RESOLUTION
from smmdn.errors import InputError, SmmdnError
from smmdn.redact import remember

DEFAULT_TEAM = "default"

SecretResolver = Callable[[str], str]
"""Turns the NAME of a ``secret:NAME`` reference into its value (raises if it cannot)."""


class DeliveryConfigError(SmmdnError):
    """A target that cannot be resolved to a URL now (kept in the outbox and retried: config may be fixed)."""


DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(value: Any) -> pd.Timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` (or a number of hours) as a Timedelta."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return pd.Timedelta(hours=float(value))
    match = DURATION.match(str(value).strip().lower())
    if not match:
        raise ValueError(f"cannot read {value!r} as a duration (e.g. 0h, 30m, 12h, 7d, 2w)")
    return pd.Timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


class _Timing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group_wait: str | float | None = None
    group_interval: str | float | None = None
    repeat_interval: str | float | None = None
    repeat_max: str | float | None = None
    digest: bool | None = None
    send_resolved: bool | None = None
    resolve_hold: str | float | None = None

    @field_validator("group_wait", "group_interval", "repeat_interval", "repeat_max", "resolve_hold")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is not None:
            duration(value)
        return value


class _Team(_Timing):
    urls: list[str] = Field(min_length=1)
    escalate_to: str | None = None


NO_WAIT, HOURS_12, HOURS_24, HOURS_48, DAYS_7 = (pd.Timedelta(0), pd.Timedelta(hours=12), pd.Timedelta(hours=24),
                                                pd.Timedelta(hours=48), pd.Timedelta(days=7))


@dataclass(frozen=True)
class Timing:
    """When a team hears about an incident (Alertmanager's group_wait / group_interval / repeat_interval)."""

    group_wait: pd.Timedelta = NO_WAIT
    group_interval: pd.Timedelta = HOURS_12
    repeat_interval: pd.Timedelta = HOURS_24
    repeat_max: pd.Timedelta = DAYS_7
    digest: bool = False
    send_resolved: bool = True
    # A resolution is announced once the incident stayed resolved this long: an alert of its cause raised
    # within it (a condition that cleared for the clear steps and came back) rejoins it without a message.
    # 48 h: a recurrence found by the next two daily cycles (severe at once, or after the persistence days).
    resolve_hold: pd.Timedelta = HOURS_48

    def merged(self, spec: _Timing) -> Timing:
        given = {k: v for k, v in spec.model_dump(include=set(_Timing.model_fields)).items() if v is not None}
        return replace(self, **{k: (duration(v) if k not in ("digest", "send_resolved") else v)
                                for k, v in given.items()})

    def repeat_after(self, reminders: int) -> pd.Timedelta:
        """The wait before reminder ``reminders + 1``: repeat_interval doubling per reminder, capped."""
        return min(self.repeat_interval * (2 ** min(reminders, 30)), self.repeat_max)


class _Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teams: list[str] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    teams: dict[str, _Team] = Field(default_factory=dict)
    routes: list[_Route] = Field(default_factory=list)
    operators: list[str] = Field(default_factory=list)
    notify: _Timing = Field(default_factory=_Timing)
    inhibit_rules: Any = None

    @field_validator("teams")
    @classmethod
    def _no_default(cls, value: dict[str, _Team]) -> dict[str, _Team]:
        if DEFAULT_TEAM in value:
            raise ValueError(f"team name {DEFAULT_TEAM!r} is reserved for SMMDN_APPRISE_URLS")
        return value


@dataclass(frozen=True)
class Route:
    teams: tuple[str, ...]
    tags: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    def matches(self, site: str, tags: list[str] | tuple[str, ...], kind: str | None) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        if not self.tags and not self.sites:
            return True
        return bool(set(self.tags) & set(tags)) or any(fnmatch.fnmatchcase(site, p) for p in self.sites)


@dataclass(frozen=True)
class Routes:
    """Parsed routing table plus the default URLs (``SMMDN_APPRISE_URLS``)."""

    teams: dict[str, tuple[str, ...]]
    escalate_to: dict[str, str]
    routes: tuple[Route, ...] = ()
    operators: tuple[str, ...] = ()
    default_urls: tuple[str, ...] = ()
    secrets: SecretResolver | None = None
    vwc_resolution: float = DEFAULT_VWC_RESOLUTION  # how the messages round water contents
    timings: dict[str, Timing] = field(default_factory=dict)
    default_timing: Timing = Timing()
    inhibit: tuple[Rule, ...] = DEFAULT_RULES

    def timing(self, team: str) -> Timing:
        return self.timings.get(team, self.default_timing)

    def resolve_hold(self) -> pd.Timedelta:
        """The longest hold of any team: how long a resolved incident can still be joined."""
        return max([t.resolve_hold for t in self.timings.values()] + [self.default_timing.resolve_hold])

    def teams_for(self, site: str, tags: list[str] | tuple[str, ...] | None, kind: str | None) -> list[str]:
        found: list[str] = []
        for route in self.routes:
            if route.matches(site, list(tags or ()), kind):
                found.extend(t for t in route.teams if t not in found)
        return found or [DEFAULT_TEAM]

    def escalation_teams(self, teams: list[str]) -> list[str]:
        out: list[str] = []
        for team in teams:
            target = self.escalate_to.get(team, team)
            if target not in out:
                out.append(target)
        return out

    def operator_teams(self) -> list[str]:
        return list(self.operators) or [DEFAULT_TEAM]

    def teams_for_alert(self, alert_kind: str, site: str, tags: list[str] | tuple[str, ...] | None) -> list[str]:
        """The operators for the system's own alerts (``OPERATOR_KINDS``), else the site's routes."""
        return self.operator_teams() if alert_kind in OPERATOR_KINDS else self.teams_for(site, tags, alert_kind)

    def targets(self, team: str) -> list[str]:
        """``team#index`` per configured URL (one for a team without URLs, so the message waits visibly)."""
        refs = self.default_urls if team == DEFAULT_TEAM else self.teams.get(team, ())
        return [f"{team}#{i}" for i in range(max(len(refs), 1))]

    def resolve(self, target: str) -> str:
        """The apprise URL of ``team#index`` (env:/secret: references looked up now)."""
        team, _, index = target.rpartition("#")
        refs = self.default_urls if team == DEFAULT_TEAM else self.teams.get(team)
        if refs is None:
            raise DeliveryConfigError(f"team {team!r} is no longer in the routes file (SMMDN_ALERT_ROUTES_FILE)")
        if not refs:
            raise DeliveryConfigError("no route matched and SMMDN_APPRISE_URLS is empty: set it or add a route")
        i = int(index or 0)
        if i >= len(refs):
            raise DeliveryConfigError(f"team {team!r} has {len(refs)} URL(s); target {target} is gone")
        url = resolve_reference(refs[i], self.secrets)
        if refs[i] != url or "://" in url:  # a resolved secret, or a URL carrying its own token
            remember([url])
        return url


# the system's own problems: operators, not field teams
OPERATOR_KINDS = ("calibration_drift", "model_fallback", "sensors_excluded")


def resolve_reference(ref: str, secrets: SecretResolver | None = None) -> str:
    """``env:NAME`` → that environment variable; ``secret:NAME`` → ``secrets(NAME)``; else the URL itself."""
    if ref.startswith("env:"):
        name = ref[4:]
        value = os.environ.get(name)
        if not value:
            raise DeliveryConfigError(f"environment variable {name} (named in the routes file) is not set")
        return value
    if ref.startswith("secret:"):
        name = ref[7:]
        if secrets is None:
            raise DeliveryConfigError(f"secret:{name} needs a secret resolver: deliver through the daily flow or "
                                      f"the smmdn CLI, which read Prefect Secret blocks")
        try:
            return str(secrets(name))
        except Exception as exc:  # block missing, server unreachable
            raise DeliveryConfigError(f"secret {name!r}: {exc}") from exc
    return ref


def split_urls(value: str | None) -> tuple[str, ...]:
    return tuple(u.strip() for u in (value or "").split(",") if u.strip())


def parse_routes(data: Any, where: str, default_urls: tuple[str, ...] = (),
                 secrets: SecretResolver | None = None) -> Routes:
    try:
        spec = _File.model_validate(data or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise InputError(f"invalid routes file: {first['msg']}", where=where, column=path or None,
                         fix="see the format in docs/operations-guide.md (Routing per team)") from exc
    known = set(spec.teams) | {DEFAULT_TEAM}
    named = [t for r in spec.routes for t in r.teams] + list(spec.operators) + [
        t.escalate_to for t in spec.teams.values() if t.escalate_to]
    unknown = sorted(set(named) - known)
    if unknown:
        raise InputError(f"routes name unknown team(s) {', '.join(unknown)}", where=where, column="teams",
                         fix="define each team under teams: with its urls")
    base = Timing().merged(spec.notify)
    field_teams = {t for r in spec.routes for t in r.teams} | set(spec.operators)  # teams owning incidents
    return Routes(
        teams={name: tuple(t.urls) for name, t in spec.teams.items()},
        escalate_to={name: t.escalate_to for name, t in spec.teams.items() if t.escalate_to},
        routes=tuple(Route(tuple(r.teams), tuple(r.tags), tuple(r.sites), tuple(r.kinds)) for r in spec.routes),
        operators=tuple(spec.operators),
        default_urls=default_urls,
        secrets=secrets,
        timings={name: _field_digest(base.merged(t), name in field_teams and spec.notify.digest is None
                                     and t.digest is None) for name, t in spec.teams.items()},
        default_timing=base,
        inhibit=parse_rules(spec.inhibit_rules, where),
    )


def _field_digest(timing: Timing, default_digest: bool) -> Timing:
    """A team that owns incidents (named in ``routes:`` or ``operators:``) takes the daily digest unless the file
    says otherwise: the digest is its reminder. Why: with per-incident reminders (24 h doubling to 7 d) an
    incident open 30 days gets six of them against at most three other messages, so reminders would be most
    of what a field team receives (60 % on the planted-fault runs); one digest a day lists every open
    incident however many there are.
    Operators too: a calibration drift stays open for weeks (its reminders alone were 21 % of a planted-fault
    run's messages). An escalation-only team gets ESCALATED and nothing else, so no digest; nor does the
    ``default`` team of a deployment without a routes file (unchanged: reminders)."""
    return replace(timing, digest=True) if default_digest else timing


def load_routes(settings: Settings, secrets: SecretResolver | None = None) -> Routes:
    """The configured routing table (default URLs only when no routes file is set)."""
    import yaml

    default = split_urls(settings.apprise_urls.get_secret_value() if settings.apprise_urls else None)
    path = settings.alert_routes_file
    if path is None:
        return Routes(teams={}, escalate_to={}, default_urls=default, secrets=secrets,
                      vwc_resolution=settings.vwc_resolution)
    file = Path(path)
    if not file.exists():
        raise InputError(f"routes file {file} does not exist", where="SMMDN_ALERT_ROUTES_FILE",
                         fix="point SMMDN_ALERT_ROUTES_FILE at the YAML routing table, or unset it")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"routes file is not valid YAML: {exc}", where=str(file),
                         fix="fix the YAML syntax") from exc
    return replace(parse_routes(data, str(file), default, secrets), vwc_resolution=settings.vwc_resolution)
