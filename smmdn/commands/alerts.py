"""``smmdn alerts …``: see, acknowledge, silence and resolve alerts; maintenance windows and sensor replacements;
the delivery outbox; run detection, delivery or verification by hand; send a test message to a team."""

from __future__ import annotations

import argparse
import re

from smmdn.commands.output import add_json

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("alerts", help="alerts and incidents: list, incidents, ack, silence, resolve, "
                                             "maintenance, outbox, test",
                              description=__doc__)
    p.add_argument("--url", help="database URL (default: SMMDN_DATABASE_URL or the embedded SQLite file)")
    sub = p.add_subparsers(dest="alerts_command", metavar="ACTION")

    ls = sub.add_parser("list", help="active alerts (open and acknowledged): id, kind, where, since, team")
    ls.add_argument("--all", action="store_true", help="resolved ones too")
    ls.add_argument("--site")
    ls.add_argument("--kind")
    ls.add_argument("--limit", type=int, default=100)
    add_json(ls)
    ls.set_defaults(handler=list_alerts)

    inc = sub.add_parser("incidents", help="incidents (alerts grouped by cause) with their member alerts; "
                                           "one incident in full with its id")
    inc.add_argument("id", type=int, nargs="?", help="show this incident: members, why inhibited, messages")
    inc.add_argument("--all", action="store_true", help="resolved ones too")
    inc.add_argument("--site")
    inc.add_argument("--limit", type=int, default=50)
    add_json(inc)
    inc.set_defaults(handler=incidents)

    show = sub.add_parser("show", help="one alert: its incident, why it is inhibited, its last words and messages")
    show.add_argument("id", type=int)
    add_json(show)
    show.set_defaults(handler=show_alert)

    ack = sub.add_parser("ack", help="acknowledge an alert or a whole incident: someone is on it (stops reminders "
                                     "and escalation)")
    ack.add_argument("id", type=int, nargs="?", help="alert id (or --incident)")
    ack.add_argument("--incident", type=int, help="acknowledge every alert of this incident")
    ack.add_argument("--by", required=True, help="your name (recorded)")
    ack.add_argument("--note")
    ack.set_defaults(handler=ack_alert)

    res = sub.add_parser("resolve", help="resolve by hand (the team is told); a new anomaly opens a new alert")
    res.add_argument("id", type=int)
    res.add_argument("--by", required=True, help="your name (recorded)")
    res.add_argument("--note")
    res.set_defaults(handler=resolve_alert)

    sil = sub.add_parser("silence", help="suppress deliveries for a site (or one depth, sensor, kind) for a while")
    sil.add_argument("site", nargs="?", help="site id, or * for every site (or --incident)")
    sil.add_argument("--incident", type=int, help="silence exactly what this incident is made of")
    sil.add_argument("--depth", type=float)
    sil.add_argument("--sensor")
    sil.add_argument("--kind", help="only alerts of this kind (sensor_fault, cluster, missing, …)")
    span = sil.add_mutually_exclusive_group(required=True)
    span.add_argument("--for", dest="duration", help="how long: 30m, 12h, 7d, 2w")
    span.add_argument("--until", help="end time (ISO 8601; naive = UTC)")
    sil.add_argument("--by", required=True, help="your name (recorded)")
    sil.add_argument("--reason")
    sil.set_defaults(handler=silence)

    sls = sub.add_parser("silences", help="silences and maintenance windows in force (or all with --all)")
    sls.add_argument("--all", action="store_true")
    add_json(sls)
    sls.set_defaults(handler=list_silences)

    uns = sub.add_parser("unsilence", help="end a silence or maintenance window now")
    uns.add_argument("id", type=int)
    uns.set_defaults(handler=unsilence)

    mnt = sub.add_parser("maintenance", help="planned field work at a site: no alerts from its data, no deliveries")
    mnt.add_argument("site")
    mnt.add_argument("--start", required=True, help="ISO 8601 (naive = UTC)")
    mnt.add_argument("--end", required=True, help="ISO 8601 (naive = UTC)")
    mnt.add_argument("--by", required=True, help="your name (recorded)")
    mnt.add_argument("--reason")
    mnt.set_defaults(handler=maintenance)

    rep = sub.add_parser("replace", aliases=["replace-sensor"],
                         help="sensor replaced: the old one's period ends, the new one begins, its alerts close")
    rep.add_argument("site")
    rep.add_argument("depth", type=float, help="depth in cm")
    rep.add_argument("old", help="label of the sensor taken out")
    rep.add_argument("--new", help="label of the replacement (omit when the sensor is removed for good)")
    rep.add_argument("--at", help="when (ISO 8601, naive = UTC; default now)")
    rep.add_argument("--by", required=True, help="your name (recorded)")
    rep.add_argument("--note")
    rep.set_defaults(handler=replace_sensor)

    box = sub.add_parser("outbox", help="messages waiting, failed or suppressed (with their errors)")
    box.add_argument("--status", action="append", choices=["pending", "sending", "sent", "suppressed", "failed"],
                     help="repeatable; default: pending, sending, failed")
    box.add_argument("--limit", type=int, default=50)
    add_json(box)
    box.set_defaults(handler=outbox)

    rty = sub.add_parser("retry", help="put failed (or suppressed) messages back in the queue, due now")
    rty.add_argument("ids", nargs="+", type=int)
    rty.set_defaults(handler=retry)

    tst = sub.add_parser("test", help="send a test message to every destination of a team (route check)")
    tst.add_argument("team", help="team name from the routes file, or 'default' (SMMDN_APPRISE_URLS)")
    tst.add_argument("--by", default="operator")
    tst.set_defaults(handler=test_team)

    rts = sub.add_parser("routes", help="check the routes file; show which teams hear about a site")
    rts.add_argument("--site", action="append", help="show the teams for this site (repeatable)")
    rts.set_defaults(handler=routes)

    for name, helptext in (("detect", "run detection now (what the daily flow's detect step does)"),
                           ("deliver", "deliver due messages from the outbox now"),
                           ("verify", "score verifiable forecasts and judge calibration drift now")):
        step = sub.add_parser(name, help=helptext)
        step.add_argument("--now", help="the clock to run at (ISO 8601; default: now)")
        step.set_defaults(handler=run_step, step=name)
    p.set_defaults(handler=lambda args: p.print_help() or 2)


# --- helpers --------------------------------------------------------------------------------------------
LIST_FIELDS = ("id", "status", "kind", "site", "depth_cm", "sensor", "window_start", "window_end", "observed",
               "predicted_low", "predicted_high", "teams", "acked_by", "created_at")


def _settings():  # type: ignore[no-untyped-def]
    from smmdn.config import get_settings

    return get_settings()


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from smmdn.store import Store

    return Store(args.url or _settings().resolved_database_url)


def _now():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.Timestamp.now(tz="UTC")


def parse_time(value: str | None, what: str):  # type: ignore[no-untyped-def]
    """ISO 8601 → UTC timestamp (naive is UTC); None → now."""
    from smmdn.commands.args import parse_time as parse

    return _now() if value is None else parse(value, what)


def parse_duration(value: str):  # type: ignore[no-untyped-def]
    import pandas as pd

    from smmdn.errors import InputError

    match = DURATION.match(value.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"cannot read {value!r} as a duration", where="--for", fix="e.g. 30m, 12h, 7d or 2w")
    return pd.Timedelta(**{UNITS[match.group(2)]: float(match.group(1))})


def _day(value) -> str:  # type: ignore[no-untyped-def]
    import pandas as pd

    return "-" if value is None or pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _routes():  # type: ignore[no-untyped-def]
    from flows.secrets import prefect_secret
    from smmdn.alerts.routing import load_routes

    return load_routes(_settings(), secrets=prefect_secret)


# --- handlers -------------------------------------------------------------------------------------------
def list_alerts(args: argparse.Namespace) -> int:
    from smmdn.alerts.lifecycle import site_info
    from smmdn.commands.output import print_json, print_table
    from smmdn.store import alerts as db

    store = _store(args)
    frame = db.read_alerts(store, status=None if args.all else db.ACTIVE, site=args.site,
                           kinds=[args.kind] if args.kind else None)
    records = frame.sort_values("id", ascending=False).head(args.limit).to_dict("records") if len(frame) else []
    routes = _routes() if records else None
    sites = site_info(store) if records else {}
    for r in records:
        r["teams"] = routes.teams_for_alert(r["kind"], r["site"], (sites.get(r["site"]) or {}).get("tags") or [])
    if args.json:
        print_json([{k: r.get(k) for k in LIST_FIELDS} for r in records])
        return 0
    print(f"{len(frame)} {'alert(s)' if args.all else 'active alert(s)'}")
    if records:
        print_table(records, [("id", lambda r: r["id"]), ("status", lambda r: r["status"]),
                              ("kind", lambda r: r["kind"]), ("site", lambda r: r["site"]),
                              ("depth", lambda r: f"{float(r['depth_cm']):g}"), ("sensor", lambda r: r["sensor"]),
                              ("since", lambda r: _day(r["window_start"])),
                              ("last seen", lambda r: _day(r["window_end"])), ("teams", lambda r: r["teams"]),
                              ("ack", lambda r: r.get("acked_by"))])
    return 0


def show_alert(args: argparse.Namespace) -> int:
    from smmdn.alerts.incidents import incident_of
    from smmdn.commands.output import print_json
    from smmdn.errors import InputError
    from smmdn.store import alerts as db
    from smmdn.store import incidents as idb

    store = _store(args)
    alert = db.get_alert(store, args.id)
    if alert is None:
        raise InputError(f"no alert {args.id}", where="alerts", fix="smmdn alerts list --all")
    incident = incident_of(store, args.id)
    member = idb.read_members(store, alert_ids=[args.id]).to_dict("records")
    deliveries = db.read_outbox(store, alert_id=args.id)
    if incident is not None:
        box = db.read_outbox(store)
        deliveries = box.loc[(box["alert_id"] == args.id) | (box["incident_id"] == incident)]
    if args.json:
        print_json({**alert, "incident": incident, "inhibition": member[0] if member else None,
                    "deliveries": deliveries.drop(columns=["attachment"], errors="ignore").to_dict("records")})
        return 0
    for key in ("id", "kind", "status", "site", "depth_cm", "sensor", "window_start", "window_end", "observed",
                "predicted_low", "predicted_high", "pit", "created_at", "acked_by", "acked_at", "resolved_by",
                "resolved_at", "escalated_at", "revision"):
        print(f"{key:<15} {alert.get(key)}")
    print(f"{'incident':<15} {incident if incident is not None else '- (grouped at the next delivery run)'}")
    if member and member[0].get("inhibited_by") is not None and member[0]["inhibited_by"] == member[0]["inhibited_by"]:
        print(f"{'inhibited':<15} by alert #{int(member[0]['inhibited_by'])}: {member[0].get('inhibit_reason')}")
    elif member:
        print(f"{'inhibited':<15} no")
    print(f"{'message':<15} {alert.get('message') or '-'}")
    print(f"\n{len(deliveries)} message(s){' about its incident' if incident is not None else ''}:")
    for r in deliveries.itertuples():
        print(f"  #{r.id} {r.event:<10} {r.target:<18} {r.status:<10} attempts {r.attempts} "
              f"{r.note or r.last_error or ''}")
    if len(deliveries):
        print("\n" + deliveries.iloc[-1]["body"])
    return 0


def incidents(args: argparse.Namespace) -> int:
    """Incidents with their member alerts (``--all``: resolved too); with an id, one incident in full."""
    from smmdn.alerts.incidents import load
    from smmdn.commands.output import print_json
    from smmdn.errors import InputError
    from smmdn.store import alerts as db
    from smmdn.store import incidents as idb

    store = _store(args)
    if args.id is not None:
        inc = load(store, args.id)
        if inc is None:
            raise InputError(f"no incident {args.id}", where="alerts", fix="smmdn alerts incidents --all")
        box = db.read_outbox(store)
        box = box.loc[box["incident_id"] == args.id] if len(box) else box
        if args.json:
            print_json({**inc.row, "members": inc.members, "messages": box.drop(
                columns=["attachment", "body"], errors="ignore").to_dict("records")})
            return 0
        print(f"incident #{inc.id} {inc.row['kind']} at {inc.row['site']}: {inc.row['status']}, opened "
              f"{_day(inc.row['opened_at'])}" + (f", resolved {_day(inc.row['resolved_at'])}"
                                                 if inc.row.get("resolved_at") is not None else "")
              + _merged(inc))
        for m in inc.members:
            _member(m, inc.row.get("root_alert_id"))
        print(f"\n{len(box)} message(s):")
        for r in box.itertuples():
            print(f"  #{r.id} {r.event:<10} {r.target:<18} {r.status:<10} {r.note or r.last_error or ''}")
        return 0
    frame = idb.read_incidents(store, status=None if args.all else ["open", "acked"], site=args.site)
    frame = frame.sort_values("id", ascending=False).head(args.limit) if len(frame) else frame
    loaded = [load(store, int(i)) for i in frame["id"]] if len(frame) else []
    if args.json:
        print_json([{**i.row, "members": i.members} for i in loaded if i is not None])
        return 0
    print(f"{len(loaded)} {'incident(s)' if args.all else 'open incident(s)'}")
    for inc in loaded:
        if inc is None:
            continue
        print(f"#{inc.id} {inc.row['status']:<8} {inc.row['kind']:<13} {inc.row['site']} since "
              f"{_day(inc.row['opened_at'])}" + (f" (ack {inc.row['acked_by']})" if inc.row.get("acked_by") else "")
              + _merged(inc))
        for m in inc.members:
            _member(m, inc.row.get("root_alert_id"))
    return 0


def _merged(inc) -> str:  # type: ignore[no-untyped-def]
    """Where a folded incident's alerts went (their cause was found there)."""
    into = inc.merged_into
    return "" if into is None else f" — merged into incident #{into} (its alerts' cause was found there)"


def _member(m: dict, root: object) -> None:  # type: ignore[type-arg]
    mark = "root" if m["id"] == root else "    "
    why = f"  inhibited by #{m['inhibited_by']} ({m.get('inhibit_rule')})" if m.get("inhibited_by") is not None else ""
    print(f"    {mark} alert #{m['id']} {m['kind']:<13} {m['site']} {float(m['depth_cm']):g} cm {m['sensor']} "
          f"{m['status']}{why}")


def ack_alert(args: argparse.Namespace) -> int:
    from smmdn.alerts import operator
    from smmdn.errors import InputError

    if (args.id is None) == (args.incident is None):
        raise InputError("give an alert id or --incident (one of them)", where="smmdn alerts ack",
                         fix="smmdn alerts ack 12 --by <name>, or smmdn alerts ack --incident 3 --by <name>")
    if args.incident is not None:
        done = operator.ack_incident(_store(args), args.incident, args.by, _now(), note=args.note)
        print(f"incident {args.incident} acknowledged by {args.by.strip()} (alerts {done or 'already acknowledged'}): "
              "no reminders or escalation until it resolves")
        return 0
    row = operator.ack(_store(args), args.id, args.by, _now(), note=args.note)
    print(f"alert {row['id']} acknowledged by {row['acked_by']}: no reminders or escalation until it resolves")
    return 0


def resolve_alert(args: argparse.Namespace) -> int:
    from smmdn.alerts import operator
    from smmdn.alerts.deliver import deliver_outbox

    store, table = _store(args), _routes()
    row = operator.resolve(store, args.id, args.by, _now(), table, note=args.note)
    sent = deliver_outbox(store, _settings(), routes=table)
    print(f"alert {row['id']} resolved by {row['resolved_by']}; messages sent {sent.sent}, waiting "
          f"{sent.retrying}")
    return 0


def silence(args: argparse.Namespace) -> int:
    from smmdn.alerts import operator
    from smmdn.errors import InputError

    now = _now()
    until = now + parse_duration(args.duration) if args.duration else parse_time(args.until, "--until")
    if (args.site is None) == (args.incident is None):
        raise InputError("give a site or --incident (one of them)", where="smmdn alerts silence",
                         fix="smmdn alerts silence S1 --for 2d --by <name>, or --incident 3 --for 2d --by <name>")
    if args.incident is not None:
        ids = operator.silence_incident(_store(args), args.incident, by=args.by, now=now, until=until,
                                        reason=args.reason)
        print(f"incident {args.incident} silenced until {until.isoformat()}: silence(s) {ids} (alerts still open "
              "and listed; not delivered)")
        return 0
    sid = operator.silence(_store(args), args.site, by=args.by, now=now, until=until, depth_cm=args.depth,
                            sensor=args.sensor, kind=args.kind, reason=args.reason)
    print(f"silence #{sid}: {args.site} until {until.isoformat()} (alerts still open and listed; not delivered)")
    return 0


def list_silences(args: argparse.Namespace) -> int:
    from smmdn.commands.output import print_json, print_table
    from smmdn.store import alerts as db

    frame = db.read_silences(_store(args), include_cancelled=args.all, ending_after=None if args.all else _now())
    records = frame.to_dict("records")
    if args.json:
        print_json(records)
        return 0
    print(f"{len(frame)} silence(s) / maintenance window(s)")

    def scope(r: dict) -> str:
        depth = r.get("depth_cm")
        return " ".join(x for x in (None if depth is None or depth != depth else f"{depth:g}cm", r.get("sensor"),
                                    r.get("alert_kind")) if x) or "whole site"

    if records:
        print_table(records, [("id", lambda r: r["id"]), ("kind", lambda r: r["kind"]), ("site", lambda r: r["site"]),
                              ("scope", scope), ("from", lambda r: _day(r["starts_at"])),
                              ("until", lambda r: _day(r["ends_at"])), ("by", lambda r: r["created_by"]),
                              ("ended", lambda r: "yes" if r.get("cancelled_at") == r.get("cancelled_at")
                               and r.get("cancelled_at") else ""), ("reason", lambda r: r.get("reason"))])
    return 0


def unsilence(args: argparse.Namespace) -> int:
    from smmdn.errors import InputError
    from smmdn.store import alerts as db

    if not db.cancel_silence(_store(args), args.id, _now()):
        raise InputError(f"no active silence #{args.id}", where="alert_silences", fix="smmdn alerts silences")
    print(f"silence #{args.id} ended")
    return 0


def maintenance(args: argparse.Namespace) -> int:
    from smmdn.alerts import operator

    start, end = parse_time(args.start, "--start"), parse_time(args.end, "--end")
    mid = operator.maintenance(_store(args), args.site, by=args.by, start=start, end=end, now=_now(),
                                reason=args.reason)
    print(f"maintenance #{mid}: {args.site} {start.isoformat()} → {end.isoformat()} (no alerts, no deliveries)")
    return 0


def replace_sensor(args: argparse.Namespace) -> int:
    from smmdn.alerts import operator
    from smmdn.alerts.deliver import deliver_outbox

    store, table = _store(args), _routes()
    at = parse_time(args.at, "--at")
    closed = operator.replace_sensor(store, args.site, args.depth, args.old, args.new, at=at, by=args.by,
                                     now=_now(), routes=table, note=args.note)
    deliver_outbox(store, _settings(), routes=table)
    print(f"{args.site} {args.depth:g} cm: sensor {args.old} ends {at.isoformat()}"
          + (f", {args.new} starts" if args.new else "") + f"; closed alert(s): {closed or 'none'}")
    print("also record it in the site registry (active_to / a new sensor entry) so the registry stays the truth")
    return 0


def outbox(args: argparse.Namespace) -> int:
    from smmdn.commands.output import print_json, print_table
    from smmdn.display import plain
    from smmdn.store import alerts as db

    store = _store(args)
    frame = db.read_outbox(store, status=args.status or ["pending", "sending", "failed"])
    records = frame.drop(columns=["attachment"], errors="ignore").tail(args.limit).to_dict("records")
    if args.json:
        print_json(records)
        return 0
    print(f"{len(frame)} message(s); all: {plain(db.outbox_counts(store))}")
    if records:
        print_table(records, [("id", lambda r: r["id"]), ("status", lambda r: r["status"]),
                              ("event", lambda r: r["event"]),
                              ("alert", lambda r: int(r["alert_id"]) if r.get("alert_id") == r.get("alert_id")
                               and r.get("alert_id") is not None else None),
                              ("target", lambda r: r["target"]), ("attempts", lambda r: r["attempts"]),
                              ("next", lambda r: _day(r["next_attempt_at"])),
                              ("note", lambda r: r.get("note") or r.get("last_error"))])
    return 0


def retry(args: argparse.Namespace) -> int:
    from smmdn.alerts.deliver import deliver_outbox
    from smmdn.store import alerts as db

    store = _store(args)
    n = db.requeue(store, args.ids, _now())
    outcome = deliver_outbox(store, _settings(), routes=_routes(), only=list(args.ids), plan=False)  # just these
    print(f"{n} message(s) requeued; sent {outcome.sent}, waiting {outcome.retrying}, failed {outcome.failed}")
    return 0 if not outcome.failed else 1


def test_team(args: argparse.Namespace) -> int:
    from smmdn.alerts.deliver import send_test

    outcome = send_test(_store(args), _settings(), args.team, by=args.by, routes=_routes())
    print(f"test to team {args.team}: sent {outcome.sent}, waiting {outcome.retrying}, failed {outcome.failed}")
    for error in outcome.errors:
        print(f"  {error}")
    return 0 if outcome.sent and not outcome.errors else 1


def routes(args: argparse.Namespace) -> int:
    from smmdn.alerts.lifecycle import site_info

    table = _routes()
    source = _settings().alert_routes_file or "(no routes file: everything goes to SMMDN_APPRISE_URLS)"
    print(f"routes: {source}")
    for team, refs in sorted({"default": table.default_urls, **table.teams}.items()):
        shown = [r if r.startswith(("env:", "secret:")) else r.split("://", 1)[0] + "://…" for r in refs]
        print(f"  team {team:<16} {len(refs)} destination(s): {', '.join(shown) or 'none'}"
              + (f"; escalates to {table.escalate_to[team]}" if team in table.escalate_to else ""))
    print(f"  operators (calibration drift): {', '.join(table.operator_teams())}")
    if args.site:
        sites = site_info(_store(args))
        for site in args.site:
            print(f"  site {site}: {', '.join(table.teams_for(site, (sites.get(site) or {}).get('tags') or [], None))}")
    return 0


def run_step(args: argparse.Namespace) -> int:
    """One step of the daily cycle now, as the flow runs it; prints its summary as JSON."""
    import json

    from flows.common import summarise

    store, settings, now = _store(args), _settings(), parse_time(args.now, "--now")
    if args.step == "detect":
        from smmdn.alerts.step import detect  # messages are planned by deliver (the end of the cycle)

        result = summarise(detect(store, now, settings, routes=_routes()))
    elif args.step == "deliver":
        from smmdn.alerts.deliver import deliver_outbox

        result = summarise(deliver_outbox(store, settings, now, routes=_routes()))
    else:
        from smmdn.verify.verification import verify

        result = summarise(verify(store, now, settings, routes=_routes()))
    print(json.dumps({"status": "ok", "result": result}, indent=2, default=str))
    return 0
