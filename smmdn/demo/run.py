"""``smmdn demo``: a simulated network fed through the real adapters into the real daily cycle, offline.

Layout under ``home`` (default ``var/demo``): ``data/smmdn.db`` (SQLite), ``landing/`` (TOA5 uploads,
``processed/`` after ingest), ``model/models/<version>`` (checkpoints), ``artifact/data-docs`` (Great
Expectations), ``alerts/received.jsonl`` (the local alert sink), ``prefect/`` (Prefect's ephemeral
server database: artifacts and run history), ``registry.yaml``, ``summary.json``.

Environment is set before Prefect is imported, so the demo never touches a user's Prefect profile.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

TINY_MODEL = {"hidden": 16, "seq_len": 45, "warmup": 10, "max_epochs": 8, "batch_size": 64, "valid_steps": 14,
              "fine_tune_epochs": 2, "patience": 3, "min_epochs": 2, "chunks_per_location": 8, "device": "cpu"}
START = pd.Timestamp("2024-03-01", tz="UTC")


@dataclass
class DemoOptions:
    home: Path
    sites: int = 3
    days: int = 60
    history: int = 60
    seed: int = 7
    fresh: bool = True
    model: dict[str, Any] | None = None
    log_file: bool = True  # library and Prefect logs to <home>/demo.log instead of the terminal


def prepare_environment(home: Path, extra: dict[str, str]) -> None:
    """SMMDN_* and PREFECT_* for an isolated, offline run (before Prefect is imported)."""
    env = {
        "SMMDN_HOME": str(home), "SMMDN_DATABASE_URL": "", "SMMDN_SHARED_STORAGE_URL": "",
        "SMMDN_REGISTRY_FILE": str(home / "registry.yaml"), "SMMDN_HOLDOUT_DAYS": "10", "SMMDN_FORECAST_HORIZON": "7",
        "SMMDN_HTTP_RETRIES": "0", "SMMDN_HTTP_BACKOFF_S": "0.01", "SMMDN_FULL_RETRAIN_WEEKDAY": "6",
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": "", "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "prefect" / "results"),
        "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        # a 16-unit LSTM on 9 series gains nothing from a second intra-op thread: on a small shared
        # machine OpenMP's extra thread only contends with the Prefect server (~4x slower per batch)
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        **extra,
    }
    for key, value in env.items():
        if value == "":
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    from smmdn.config import get_settings

    get_settings.cache_clear()


def run_demo(opts: DemoOptions, echo: Any = print) -> dict[str, Any]:
    """Simulate, serve, and run ``opts.days`` daily cycles from cold start; returns where everything is."""
    from smmdn.demo.feeds import registry_yaml, write_toa5_day
    from smmdn.demo.simulate import simulate_network
    from smmdn.display import plain

    home = opts.home.resolve()
    if opts.fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if opts.log_file:
        logs_to_file(home / "demo.log")
    echo(f"smmdn demo in {home}: simulating the network, starting Prefect and loading the libraries "
         "(about half a minute)…")
    total = opts.history + opts.days + 16
    net = simulate_network(opts.sites, START, total, failure_day=opts.history + opts.days // 2, seed=opts.seed)
    services = start_services(home, net.sites, net.weather, opts.seed, registry_yaml(net.sites),
                              home / "alerts" / "received.jsonl",
                              lambda path, receiver: write_routes(path, net.sites, receiver))
    weather, receiver, server, settings = services.weather, services.receiver, services.server, services.settings
    landing = settings.path("landing")
    by_site = dict(tuple(net.readings.groupby("site", sort=False)))  # one filter per site, not per site and day
    for s in net.sites:  # the loggers' stored history: one upload per site
        write_toa5_day(landing, s.site, by_site[s.site], START, days=opts.history)
    echo(f"simulated {opts.sites} sites x 3 depths x 3 sensors; {opts.history} days of logger files in {landing}")
    echo(f"weather (Open-Meteo format) at {weather.url}; alerts sink {receiver.url}; "
         f"failing sensor {plain(net.failing)} from {net.failure_start.date()}")

    from prefect.settings import temporary_settings

    from flows.daily import daily

    if opts.log_file:  # again: importing Prefect configured its own logging
        logs_to_file(home / "demo.log")
    _warm_imports()
    if server is not None:
        server.join()
    threads = _torch_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    summaries = []
    try:
        # Flow-run heartbeats feed a crash-detection automation on a Prefect server; the demo's ephemeral
        # server has none, and each flow run waits up to 1 s at exit for its heartbeat thread (5 flow
        # runs a cycle). States, results, logs and artifacts are recorded as before.
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            for d in range(opts.history, opts.history + opts.days):
                day = START + pd.Timedelta(days=d)
                for s in net.sites:
                    write_toa5_day(landing, s.site, by_site[s.site], day)
                weather.today = day + pd.Timedelta(days=1)
                t0 = time.perf_counter()
                summary = daily(day=day.date().isoformat(), history_days=opts.history + opts.days,
                                train_overrides=opts.model or TINY_MODEL)
                summaries.append(_line(summary, time.perf_counter() - t0))
                echo(_echo(summaries[-1], len(summaries), opts.days, time.perf_counter() - started))
    finally:
        weather.stop()
        receiver.stop()
        _torch_threads(threads)
    result = _where(home, settings, summaries, receiver, time.perf_counter() - started)
    (home / "summary.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return result


@dataclass
class Services:
    """What a simulated network runs beside the daily cycle, started and wired into the environment."""

    weather: Any  # WeatherServer (Open-Meteo format on 127.0.0.1)
    receiver: Any  # AlertReceiver (the local apprise sink)
    server: threading.Thread | None  # Prefect's ephemeral server starting in the background
    settings: Any  # the Settings of the isolated home, its store initialised


def start_services(home: Path, sites: Any, weather: pd.DataFrame, seed: int, registry_text: str,
                   received: Path, routes_file: Any) -> Services:
    """Weather server, alert receiver, registry and routes files, the isolated environment, Prefect's server
    and the store of ``home`` — in the order each needs the one before (the demo and the detection
    benchmark start the same way). ``routes_file(path, receiver)`` writes the routing table."""
    from smmdn.demo.feeds import WeatherServer
    from smmdn.demo.receiver import AlertReceiver

    served = WeatherServer(sites, weather, seed=seed).start()
    receiver = AlertReceiver(received).start()
    (home / "registry.yaml").write_text(registry_text, encoding="utf-8")
    routes = routes_file(home / "alert-routes.yaml", receiver)
    prepare_environment(home, {**served.settings_env(), "SMMDN_APPRISE_URLS": receiver.url,
                               "SMMDN_ALERT_ROUTES_FILE": str(routes)})
    server = _start_prefect_server()
    from smmdn.config import get_settings
    from smmdn.store import Store

    settings = get_settings()
    Store(settings.resolved_database_url).init()
    return Services(served, receiver, server, settings)


def _start_prefect_server() -> threading.Thread | None:
    """Start Prefect's ephemeral API server in the background (~10 s on 2 cores: a subprocess that
    imports the server and migrates a new database), so that it overlaps with writing the logger files
    and loading the libraries instead of holding up the first cycle. Joined before the first flow run;
    if it failed, the first flow run starts it again and reports the error."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():  # a configured server (or a test harness): nothing to start
        return None
    from prefect.server.api.server import SubprocessASGIServer

    thread = threading.Thread(target=SubprocessASGIServer().start, name="prefect-ephemeral-start", daemon=True)
    thread.start()
    return thread


def _warm_imports() -> None:
    """Load what the first cycle needs anyway (torch, Great Expectations, matplotlib's Agg canvas) while
    the Prefect server starts."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import torch  # noqa: F401

    from smmdn.quality.gx import _import_gx

    _import_gx()


def _torch_threads(n: int) -> int:
    """Set torch's intra-op threads (``OMP_NUM_THREADS`` only counts before torch loads); returns the old count."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return old


def write_routes(path: Path, sites: Any, receiver: Any) -> Path:
    """The demo's routing table: one field team per site (by its ``team:field-N`` tag), operators apart;
    every team posts to the local receiver under its own path (``/field-1``, ``/ops``) and takes the daily
    digest (``smmdn.alerts.digest``) instead of per-incident reminders; grouping, inhibition and timing are
    the product defaults."""
    import yaml

    teams = {f"field-{s.site[-1]}": {"urls": [receiver.url_for(f"field-{s.site[-1]}")], "escalate_to": "ops",
                                     "digest": True} for s in sites}
    teams["ops"] = {"urls": [receiver.url_for("ops")], "digest": True}  # digests instead of reminders
    spec = {"teams": teams, "operators": ["ops"],
            "routes": [{"tags": [f"team:field-{s.site[-1]}"], "teams": [f"field-{s.site[-1]}"]} for s in sites]}
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _line(summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    from flows.report import cycle_row

    return {**cycle_row(summary), "seconds": round(seconds, 1)}


def logs_to_file(path: Path) -> None:
    """Send every log record (library, Prefect, apprise) to ``path``: the terminal keeps the day lines."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        file = logging.FileHandler(path, encoding="utf-8")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(file)
    root.setLevel(logging.INFO)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _echo(row: dict[str, Any], done: int, total: int, elapsed: float) -> str:
    """``day 3/60 2024-05-03: …; 0:41 elapsed, about 13:10 left`` (the estimate from the mean cycle so far)."""
    from smmdn.display import score

    left = elapsed / done * (total - done) if done else 0.0
    return (f"day {done}/{total} {row['issue']}: +{row['inserted']} obs, training {row['training']}, "
            f"model {row['model']}, crps {score(row.get('holdout_crps'))}, {row['forecast_rows']} forecast rows, "
            f"alerts {row['alerts']} ({row['seconds']} s; {_clock(elapsed)} elapsed"
            + (f", about {_clock(left)} left)" if done < total else ")"))


def received_messages(path: Path) -> dict[str, dict[str, int]]:
    """What the local receiver got: messages per route (its URL path) and per event (NEW, STILL OPEN, …)."""
    from smmdn.alerts.message import EVENTS

    by_route: dict[str, int] = {}
    by_event: dict[str, int] = {}
    names = {v: k for k, v in EVENTS.items()}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            msg = json.loads(line)
            route = str(msg.get("path", "")).strip("/") or "default"
            by_route[route] = by_route.get(route, 0) + 1
            title = str((msg.get("payload") or {}).get("title", ""))
            label = title.removeprefix("[smmdn] ").split(":", 1)[0]
            event = names.get(label, label.lower() or "unknown")
            by_event[event] = by_event.get(event, 0) + 1
    return {"by_route": dict(sorted(by_route.items())), "by_event": dict(sorted(by_event.items()))}


def _where(home: Path, settings: Any, days: list[dict[str, Any]], receiver: Any, seconds: float) -> dict[str, Any]:
    from smmdn.store import Store

    store = Store(settings.resolved_database_url)
    versions = store.model_versions()
    runs = store.forecast_runs()
    from smmdn.store import alerts as db

    alerts_file = receiver.path
    delivered = alerts_file.read_text(encoding="utf-8").count("\n") if alerts_file.exists() else 0
    champion = store.champion()
    alerts = db.read_alerts(store)
    return {
        "seconds": round(seconds, 1),
        "home": str(home),
        "database": settings.resolved_database_url,
        "landing": str(settings.path("landing")),
        "models": str(settings.path("model") / "models"),
        "data_docs": str(settings.path("artifact") / "data-docs"),
        "alerts_file": str(alerts_file),
        "alerts_delivered": delivered,
        "messages": received_messages(alerts_file),
        "log_file": str(home / "demo.log"),
        "alerts": [{"id": int(a.id), "kind": a.kind, "site": a.site, "depth_cm": a.depth_cm, "sensor": a.sensor,
                    "status": a.status, "since": str(a.window_start)} for a in alerts.itertuples()],
        "outbox": db.outbox_counts(store),
        "verification_rows": store.count("verification"),
        "prefect_home": str(home / "prefect"),
        "model_versions": len(versions),
        "promoted": int((versions["status"].isin(["champion", "retired"])).sum()) if not versions.empty else 0,
        "rejected": int((versions["status"] == "rejected").sum()) if not versions.empty else 0,
        "champion": champion["version"] if champion else None,
        "forecast_runs": int((runs["status"] == "complete").sum()) if not runs.empty else 0,
        "forecast_rows": store.count("forecasts"),
        "days": days,
    }
