"""Alerts, one package per concept as in Prometheus Alertmanager: ``detect`` (pure scoring and classification),
``step`` (the daily detect step), ``lifecycle`` (plan + apply with outbox rows, one transaction), ``silences``,
``routing``, ``message``, ``plots``, ``deliver`` (the outbox through apprise), ``operator`` (ack, resolve,
silence, maintenance, replace a sensor) and ``drift`` (the operators' calibration-drift alert)."""
