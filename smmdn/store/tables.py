"""The live schema: the frozen baseline (``schema_v1``) plus what later revisions add.

Keys, partitioning and the reasons behind them are documented in ``smmdn.store.schema_v1``.
A later revision that adds a table or column declares it here *and* in its own migration.
"""

from __future__ import annotations

import sqlalchemy as sa

from smmdn.store.schema_v1 import (  # noqa: F401 - re-exported constants
    BASELINE_TABLES,
    FORCING_KINDS,
    MODEL_STATUSES,
    NO_ISSUE_TIME,
    RUN_STATUSES,
    FloatArray,
    Json,
    Time,
    define_baseline,
)

metadata = sa.MetaData()
_baseline = define_baseline(metadata)
sites = _baseline["sites"]
sensors = _baseline["sensors"]
observations = _baseline["observations"]
forcing = _baseline["forcing"]
model_versions = _baseline["model_versions"]
forecast_runs = _baseline["forecast_runs"]
forecasts = _baseline["forecasts"]
alerts = _baseline["alerts"]
quarantine = _baseline["quarantine"]
watermarks = _baseline["watermarks"]
processed_files = _baseline["processed_files"]
validation_runs = _baseline["validation_runs"]

# Hypertables of the baseline (revision 0002 converts exactly these; frozen like the baseline itself).
BASELINE_HYPERTABLES = {"observations": "time", "forcing": "time", "forecasts": "valid_time"}


ACTIVE_ALERT_INDEX = "uq_alerts_active_series_kind"
ACTIVE_ALERT_KEY = ("site", "depth_cm", "sensor", "kind")


def alert_columns() -> list[sa.Column]:
    """Lifecycle columns revision 0005 adds to ``alerts`` (fresh objects on every call)."""
    return [
        sa.Column("revision", sa.Integer, nullable=False, server_default="0", default=0),
        sa.Column("updated_at", Time),
        sa.Column("last_event_at", Time, comment="When the last lifecycle event was queued (reminder clock)."),
        sa.Column("acked_by", sa.Text),
        sa.Column("acked_at", Time),
        sa.Column("ack_note", sa.Text),
        sa.Column("resolved_at", Time),
        sa.Column("resolved_by", sa.Text, comment="'auto' (condition cleared) or the operator's name."),
        sa.Column("escalated_at", Time),
    ]


# --- revision 0005: alert lifecycle, delivery outbox, silences, sensor replacements, verification ----
def define_alerting(md: sa.MetaData, alerts_table: sa.Table) -> dict[str, sa.Table]:
    """Tables (and the alert columns) added by revision 0005; a function so the migration builds its own copy.

    - ``alerts`` gains lifecycle columns: ``revision`` counts lifecycle events (it is part of every outbox
      idempotency key), ack/resolve/escalation stamps. At most one *active* (not resolved) alert per
      (site, depth_cm, sensor, kind): a partial unique index, on both backends.
    - ``alert_outbox``: one row per (alert, lifecycle event, delivery target); the unique
      ``idempotency_key`` makes enqueueing idempotent, ``status`` walks pending → sending → sent
      (or suppressed / failed), with attempts, last error and the next retry time.
    - ``alert_silences``: operator silences (deliveries suppressed) and per-site maintenance windows
      (no detection, no deliveries) with an end time.
    - ``sensor_replacements``: a replacement survives registry reloads that know nothing of it.
    - ``verification``: one score row per (forecast, sensor); a hypertable on ``valid_time``.
    """
    for column in alert_columns():
        if column.name not in alerts_table.c:
            alerts_table.append_column(column)
    sa.Index(ACTIVE_ALERT_INDEX, *(alerts_table.c[c] for c in ACTIVE_ALERT_KEY), unique=True,
             postgresql_where=alerts_table.c.status != "resolved", sqlite_where=alerts_table.c.status != "resolved")
    outbox = sa.Table(
        "alert_outbox",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.Text, nullable=False, unique=True,
                  comment="alert id, revision, event and target: one message per event and target, ever."),
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id")),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("team", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False, comment="team#index: the URL is resolved at send time."),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("attachment", sa.LargeBinary),
        sa.Column("attachment_name", sa.Text),
        sa.Column("status", sa.Text, nullable=False, default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_error", sa.Text),
        sa.Column("note", sa.Text, comment="Why a message was suppressed."),
        sa.Column("next_attempt_at", Time, nullable=False),
        sa.Column("claimed_at", Time),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("sent_at", Time),
        sa.CheckConstraint("status IN ('pending', 'sending', 'sent', 'suppressed', 'failed')",
                           name="alert_outbox_status"),
    )
    silences = sa.Table(
        "alert_silences",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False, comment="silence | maintenance"),
        sa.Column("site", sa.Text, nullable=False, comment="'*' silences every site."),
        sa.Column("depth_cm", sa.Float),
        sa.Column("sensor", sa.Text),
        sa.Column("alert_kind", sa.Text),
        sa.Column("starts_at", Time, nullable=False),
        sa.Column("ends_at", Time, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("cancelled_at", Time),
        sa.CheckConstraint("kind IN ('silence', 'maintenance')", name="alert_silences_kind"),
        sa.CheckConstraint("ends_at > starts_at", name="alert_silences_span"),
    )
    replacements = sa.Table(
        "sensor_replacements",
        md,
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("sensor", sa.Text, primary_key=True, comment="The replaced (old) sensor."),
        sa.Column("replaced_at", Time, nullable=False),
        sa.Column("new_sensor", sa.Text),
        sa.Column("replaced_by", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
    )
    verification = sa.Table(
        "verification",
        md,
        sa.Column("valid_time", Time, primary_key=True),
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("sensor", sa.Text, primary_key=True),
        sa.Column("issue_time", Time, primary_key=True),
        sa.Column("model_version", sa.Text, primary_key=True),
        sa.Column("lead", sa.Integer, nullable=False),
        sa.Column("observed", sa.Float, nullable=False, comment="Daily mean of trusted readings, m3/m3."),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("crps", sa.Float, nullable=False),
        sa.Column("pit", sa.Float, nullable=False),
        sa.Column("in_50", sa.Boolean, nullable=False),
        sa.Column("in_90", sa.Boolean, nullable=False),
        sa.Column("width_50", sa.Float, nullable=False),
        sa.Column("width_90", sa.Float, nullable=False),
        sa.Column("scored_at", Time, nullable=False),
    )
    sa.Index("ix_alert_outbox_due", outbox.c.status, outbox.c.next_attempt_at)
    sa.Index("ix_alert_silences_site", silences.c.site, silences.c.ends_at)
    sa.Index("ix_verification_issue", verification.c.issue_time)
    return {t.name: t for t in (outbox, silences, replacements, verification)}


ALERTING_TABLES = ("alert_outbox", "alert_silences", "sensor_replacements", "verification")
ALERTING_HYPERTABLES = {"verification": "valid_time"}

_alerting = define_alerting(metadata, alerts)
alert_outbox = _alerting["alert_outbox"]
alert_silences = _alerting["alert_silences"]
sensor_replacements = _alerting["sensor_replacements"]
verification = _alerting["verification"]



# --- revision 0006: plots drawn at delivery --------------------------------------------------------------
def outbox_plot_columns() -> list[sa.Column]:
    """Revision 0006: an outbox row carries the *spec* of its plot; the deliverer draws it for messages it
    sends (rows queued before keep their PNG in ``attachment``)."""
    return [sa.Column("attachment_spec", Json, comment="Plot to draw at send time: site, depth, sensor, day, "
                                                       "days, since, title.")]


for _column in outbox_plot_columns():
    alert_outbox.append_column(_column)


# --- revision 0007: the source's own quality flags kept with every reading ------------------------------
def observation_flag_columns() -> list[sa.Column]:
    """Revision 0007: a reading keeps the flags its source gave it (ISMN: ISMN's flag and the provider's),
    verbatim, beside smmdn's own ``quality_flag``; NULL for sources that flag nothing."""
    return [
        sa.Column("ismn_flag", sa.Text, comment="ISMN quality flag as published (G, C01-C03, D01-D10, M, U)."),
        sa.Column("provider_flag", sa.Text, comment="The data provider's own flag as published."),
    ]


OBSERVATION_FLAG_COLUMNS = tuple(c.name for c in observation_flag_columns())
for _column in observation_flag_columns():
    observations.append_column(_column)

HYPERTABLES = {**BASELINE_HYPERTABLES, **ALERTING_HYPERTABLES}


# --- revision 0009: incidents (alerts grouped by cause), inhibition, per-team notification state ---------
def define_incidents(md: sa.MetaData) -> dict[str, sa.Table]:
    """Revision 0009 (issue 17): notifications go out per *incident*, not per alert.

    - ``alert_incidents``: alerts that share a cause (a sensor fault with the sibling and cluster deviations
      it causes, a cluster event across depths, a silent logger with its missing sensors).
    - ``alert_incident_members``: each alert belongs to one incident; ``inhibited_by`` names the alert whose
      rule mutes it (NULL: not inhibited), ``inhibit_rule`` / ``inhibit_reason`` say why.
    - ``alert_incident_notices``: per incident and team, what was last told (fingerprint, sequence number,
      reminders and the next reminder): the grouping and repeat clock of Alertmanager, kept in the database.
    """
    incidents = sa.Table(
        "alert_incidents",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("group_key", sa.Text, nullable=False, comment="What its members share: fault|S|d|s, cluster|S, …"),
        sa.Column("kind", sa.Text, nullable=False, comment="The kind of its root alert."),
        sa.Column("root_alert_id", sa.Integer, sa.ForeignKey("alerts.id")),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("depth_cm", sa.Float),
        sa.Column("sensor", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("opened_at", Time, nullable=False),
        sa.Column("resolved_at", Time),
        sa.Column("acked_by", sa.Text),
        sa.Column("acked_at", Time),
        sa.Column("ack_note", sa.Text),
        sa.Column("updated_at", Time),
        sa.CheckConstraint("status IN ('open', 'acked', 'resolved')", name="alert_incidents_status"),
    )
    members = sa.Table(
        "alert_incident_members",
        md,
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), primary_key=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("alert_incidents.id"), nullable=False),
        sa.Column("joined_at", Time, nullable=False),
        sa.Column("inhibited_by", sa.Integer, comment="Alert whose inhibition rule mutes this one now."),
        sa.Column("inhibit_rule", sa.Text),
        sa.Column("inhibit_reason", sa.Text),
    )
    notices = sa.Table(
        "alert_incident_notices",
        md,
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("alert_incidents.id"), primary_key=True),
        sa.Column("team", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, comment="Messages planned so far (part of their keys)."),
        sa.Column("fingerprint", sa.Text, comment="What the last message said (members, severity, status)."),
        sa.Column("last_event", sa.Text),
        sa.Column("first_sent_at", Time),
        sa.Column("last_sent_at", Time),
        sa.Column("reminders", sa.Integer, nullable=False, default=0),
        sa.Column("next_reminder_at", Time),
    )
    sa.Index("ix_alert_incidents_status", incidents.c.status, incidents.c.site)
    sa.Index("ix_alert_incident_members_incident", members.c.incident_id)
    return {t.name: t for t in (incidents, members, notices)}


def outbox_incident_columns() -> list[sa.Column]:
    """Revision 0009: an outbox row may be about an incident (``incident_id``) or be a digest (neither id)."""
    return [sa.Column("incident_id", sa.Integer, comment="The incident this message is about (NULL: alert or "
                                                         "digest).")]


INCIDENT_TABLES = ("alert_incidents", "alert_incident_members", "alert_incident_notices")
_incidents = define_incidents(metadata)
alert_incidents = _incidents["alert_incidents"]
alert_incident_members = _incidents["alert_incident_members"]
alert_incident_notices = _incidents["alert_incident_notices"]
for _column in outbox_incident_columns():
    alert_outbox.append_column(_column)


# --- revision 0010: detector state per series (the daily context detection reads instead of raw readings) --
def define_detector_state(md: sa.MetaData) -> dict[str, sa.Table]:
    """Revision 0010 (issues 16, 25, 26): what detection keeps between runs so a run (or a shard) reads only
    its new day of raw readings.

    - ``detector_days``: per series and local-standard day, the daily values every rule reads (trusted mean,
      reading and flag counts, last reading, level, within-day range and roughness), over the trailing
      window the rules need (the consensus learns offsets, spreads, CUSUM sums and run lengths over it).
    - ``detector_sites``: per site, what the cached days were built from: the ingest clock folded in
      (``built_through``: readings updated later are re-read), a fingerprint of the site's sensor periods and
      clock offset, the days covered (``first_day`` to ``through_day``), and a count and digest of its rows
      (a mismatch rebuilds the site from the raw readings).
    """
    days = sa.Table(
        "detector_days",
        md,
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("sensor", sa.Text, primary_key=True),
        sa.Column("time", Time, primary_key=True, comment="Start of the local-standard day (UTC instant)."),
        sa.Column("vwc", sa.Float, comment="Mean of the day's trusted readings (NULL: every reading flagged)."),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("n_spike", sa.Integer, nullable=False),
        sa.Column("n_flatline", sa.Integer, nullable=False),
        sa.Column("n_gap", sa.Integer, nullable=False),
        sa.Column("last_reading", Time, nullable=False),
        sa.Column("level", sa.Float, nullable=False),
        sa.Column("span", sa.Float, nullable=False),
        sa.Column("rough", sa.Float),
    )
    sites_ = sa.Table(
        "detector_sites",
        md,
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("built_through", Time, nullable=False, comment="Readings updated after this are re-read."),
        sa.Column("first_day", Time, nullable=False, comment="First local day the cached rows cover."),
        sa.Column("through_day", Time, nullable=False, comment="Local days before this are covered; later ones are "
                                                               "read from raw."),
        sa.Column("fingerprint", sa.Text, nullable=False, comment="Sensor periods and clock offset built with."),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("digest", sa.Text, nullable=False, comment="Digest of the site's cached rows."),
        sa.Column("updated_at", Time, nullable=False),
    )
    return {t.name: t for t in (days, sites_)}


def band_columns() -> list[sa.Column]:
    """Revision 0011 (issue 25): the writes a site's state folded in just before its clock (fresh objects).

    Why: a write is stamped when it starts and visible when it commits, so readings stamped shortly before
    the clock are re-read on the next run in case one was still in flight; the stamps and row counts seen in
    that band tell the next run whether anything arrived in it late (re-read) or not (skip the band).
    Every write carries one stamp and commits at once, so a write that was in flight shows up as a new stamp."""
    return [
        sa.Column("band_since", Time, comment="Start of the band (the clock minus the slack)."),
        sa.Column("band", sa.Text, comment="Write stamps (epoch microseconds, comma-separated) seen in the band."),
    ]


DETECTOR_TABLES = ("detector_days", "detector_sites")
_detector = define_detector_state(metadata)
detector_days = _detector["detector_days"]
detector_sites = _detector["detector_sites"]
for _column in band_columns():  # revision 0011 (0010's definition above stays as it created the table)
    detector_sites.append_column(_column)


# --- revision 0011: the detector's daily scores (the forecast each day was judged by, and the verdicts) ------
def define_detector_scores(md: sa.MetaData) -> sa.Table:
    """Revision 0011 (issue 25): per series and local day of the detector's window, the verdict against the
    forecast it was judged by, so a run scores only its new day (and days whose value or forecast changed).

    ``vwc``, ``run_id`` and ``rules`` are what the verdict was computed from (the day's trusted mean, the
    forecast run, the alpha levels); ``scored_at`` when (a forecast run finished later may replace it)."""
    return sa.Table(
        "detector_scores",
        md,
        sa.Column("site", sa.Text, primary_key=True),
        sa.Column("depth_cm", sa.Float, primary_key=True),
        sa.Column("sensor", sa.Text, primary_key=True),
        sa.Column("time", Time, primary_key=True, comment="Start of the local-standard day (UTC instant)."),
        sa.Column("vwc", sa.Float, comment="The daily value scored (NULL: every reading flagged)."),
        sa.Column("run_id", sa.Text, comment="Forecast run of the forecast judged by (NULL: none)."),
        sa.Column("rules", sa.Text, nullable=False, comment="The alpha levels of the verdicts."),
        sa.Column("has_forecast", sa.Boolean, nullable=False),
        sa.Column("q50", sa.Float),
        sa.Column("pit", sa.Float),
        sa.Column("outside", sa.Boolean, nullable=False),
        sa.Column("severe", sa.Boolean, nullable=False),
        sa.Column("scored_at", Time, nullable=False),
        sa.Column("digest", sa.Text, nullable=False, comment="Digest of the row (an altered row is re-scored)."),
    )


detector_scores = define_detector_scores(metadata)
