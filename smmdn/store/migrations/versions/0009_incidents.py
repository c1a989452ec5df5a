"""Incidents (issue 17): alerts grouped by cause, inhibition recorded per member, and per-team notification
state; outbox rows may be about an incident (``incident_id``) and use the new key scheme
``incident:<id>:<team>:n<seq>:<event>:<target>`` (digests: ``digest:<team>:<day>:<target>``).

Nothing pending is lost or re-sent: rows queued before the upgrade keep their ``alert:…`` keys and are
delivered as they are. Every alert still active becomes an incident of its own, and each team that was
already told about it gets a notice (fingerprint, reminder clock) as if the incident had sent those
messages, so the first notification run after the upgrade sends nothing new for it.

Down-revision: 0007 for now (issue 16 may add a 0008; the lead re-chains at merge).

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from smmdn.store.incidents import fingerprint
from smmdn.store.tables import Time, define_incidents, outbox_incident_columns

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

REPEAT, REPEAT_MAX = timedelta(hours=24), timedelta(days=7)


def upgrade() -> None:
    md = sa.MetaData()
    sa.Table("alerts", md, sa.Column("id", sa.Integer, primary_key=True))  # what the foreign keys point at
    tables = define_incidents(md)
    bind = op.get_bind()
    for name in ("alert_incidents", "alert_incident_members", "alert_incident_notices"):
        tables[name].create(bind)  # with its keys, checks and indexes exactly as declared
    with op.batch_alter_table("alert_outbox") as batch:
        for column in outbox_incident_columns():
            batch.add_column(column)
    _adopt_active_alerts(op.get_bind(), tables)


def _adopt_active_alerts(conn: sa.Connection, tables: dict[str, sa.Table]) -> None:
    """One incident per active alert, with the notices its already queued messages stand for."""
    alerts = sa.table("alerts", *(sa.column(c) for c in ("id", "kind", "site", "depth_cm", "sensor", "status",
                                                           "acked_by")),
                      *(sa.column(c, Time) for c in ("created_at", "acked_at", "escalated_at")))
    outbox = sa.table("alert_outbox", sa.column("alert_id"), sa.column("team"), sa.column("event"),
                      sa.column("created_at", Time))
    incidents, members, notices = (tables[n] for n in ("alert_incidents", "alert_incident_members",
                                                        "alert_incident_notices"))
    active = conn.execute(sa.select(alerts).where(alerts.c.status.in_(["open", "acked"]))).mappings().all()
    for a in active:
        result = conn.execute(incidents.insert().values(
            group_key=f"alert|{a['id']}", kind=a["kind"], root_alert_id=a["id"], site=a["site"],
            depth_cm=a["depth_cm"], sensor=a["sensor"], status=a["status"], opened_at=a["created_at"],
            acked_by=a["acked_by"], acked_at=a["acked_at"], updated_at=a["created_at"]))
        incident_id = int(result.inserted_primary_key[0])
        conn.execute(members.insert().values(alert_id=a["id"], incident_id=incident_id, joined_at=a["created_at"]))
        told = conn.execute(sa.select(outbox.c.team, outbox.c.event, outbox.c.created_at)
                            .where(outbox.c.alert_id == a["id"]).order_by(outbox.c.created_at)).all()
        per_team: dict[str, list] = {}
        for team, event, at in told:
            per_team.setdefault(str(team), []).append((str(event), at))
        for team, events in per_team.items():
            last = events[-1][1]
            reminders = sum(1 for e, _ in events if e == "reminder")
            conn.execute(notices.insert().values(
                incident_id=incident_id, team=team, seq=len(events), last_event=events[-1][0],
                fingerprint=fingerprint([(int(a["id"]), str(a["kind"]), a["escalated_at"] is not None)]),
                first_sent_at=events[0][1], last_sent_at=last, reminders=reminders,
                next_reminder_at=last + min(REPEAT * 2 ** reminders, REPEAT_MAX) if last is not None else None))


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:
        for column in reversed(outbox_incident_columns()):
            batch.drop_column(column.name)
    for name in ("alert_incident_notices", "alert_incident_members", "alert_incidents"):
        op.drop_table(name)
