"""One ``Settings`` object for the whole system (environment prefix ``SMMDN_``, reads ``.env``).

Why one object: every part (library, flows, CLI, containers) reads the same names, and
``.env.example`` documents each of them; a test checks that the two agree.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from smmdn.redact import remember_settings

STATE_DIR_MODE = 0o700  # state (database, weights, landing files) is readable by its owner only


class Settings(BaseSettings):
    """Runtime configuration. Every field maps to an ``SMMDN_<NAME>`` environment variable."""

    model_config = SettingsConfigDict(
        env_prefix="SMMDN_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- places ---------------------------------------------------------------------------------
    home: Path = Field(Path("var"), description="Root of local state; the other directories default under it.")
    data_dir: Path | None = Field(None, description="Embedded database, landing directory, caches.")
    model_dir: Path | None = Field(None, description="Model registry artifacts (checkpoints, scalers).")
    artifact_dir: Path | None = Field(None, description="Reports, plots, Data Docs.")
    landing_dir: Path | None = Field(None, description="Where TOA5 logger files are dropped for ingest.")
    shared_storage_url: str | None = Field(
        None,
        description="URL of storage shared by CPU and GPU workers for models and flow results "
        "(file:///mnt/smmdn or a Prefect-supported remote); default: model_dir on this host.",
    )

    # --- database -------------------------------------------------------------------------------
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Default: SQLite file in data_dir (the embedded default). "
        "Production: postgresql+psycopg://user:pass@host:5432/smmdn?sslmode=require",
    )
    retention_days: int | None = Field(
        None, description="Drop raw observation/forcing chunks older than this many days (None keeps all)."
    )

    # --- sources --------------------------------------------------------------------------------
    uscrn_url: str = "https://www.ncei.noaa.gov/pub/data/uscrn/products"
    cosmos_url: str | None = None
    sensorthings_url: str | None = None
    open_meteo_url: str = "https://api.open-meteo.com/v1/forecast"
    open_meteo_archive_url: str = "https://archive-api.open-meteo.com/v1/archive"
    open_meteo_historical_forecast_url: str = "https://historical-forecast-api.open-meteo.com/v1/forecast"
    open_meteo_api_key: SecretStr | None = None
    http_connect_timeout_s: float = 5.0
    http_read_timeout_s: float = 30.0
    http_deadline_s: float = Field(
        120.0, gt=0, description="Overall deadline of one HTTP request, body included (a trickling upstream "
        "cannot hold a run longer than this, whatever the read timeout).")
    http_retries: int = 3
    http_backoff_s: float = 0.5
    user_agent: str = "smmdn/0.1 (soil-moisture forecasting; +https://github.com/smmdn)"
    registry_file: Path | None = Field(None, description="Site registry YAML (sites, sensors, sources).")

    # --- forecasting ----------------------------------------------------------------------------
    timezone: str = "UTC"
    forecast_horizon: int = Field(7, ge=1, le=16, description="Lead times issued per run (steps).")
    mixture_components: int = Field(3, ge=1, le=10)
    sigma_floor: float = Field(0.002, gt=0, description="Smallest mixture sigma in m3/m3 (sensor resolution).")
    vwc_resolution: float = Field(0.001, gt=0, le=0.1, description=(
        "Water contents in messages, artifacts and tables are rounded to this (m3/m3)."))
    holdout_days: int = Field(14, ge=1, description="Most recent days held out to judge challengers.")
    promotion_tolerance: float = Field(
        0.0, ge=0, description="Relative CRPS a challenger may lose against the champion and still win."
    )
    full_retrain_weekday: int = Field(6, ge=0, le=6, description="Weekday (0=Monday) of the full retrain.")
    shard_sites: int = Field(
        0, ge=0, description="Sites per shard of the daily cycle: each shard runs as its own flow run of the "
        "daily-shard deployment (cpu pool). 0: no sharding, the whole network in the daily flow run.")

    # --- alerts ---------------------------------------------------------------------------------
    apprise_urls: SecretStr | None = Field(
        None, description="Default apprise URLs (comma-separated) when no route in alert_routes_file matches."
    )
    alert_routes_file: Path | None = Field(None, description="YAML routing table: site tags -> teams -> URLs.")
    alert_alpha: float = Field(
        0.02, gt=0, lt=0.5, description="An observation is outside when its PIT is outside [a/2, 1-a/2] and it lies "
        "outside the highest-density region of mass 1-a of the predicted mixture.")
    alert_severe_alpha: float = Field(
        0.001, gt=0, lt=0.5, description="Outside at this (smaller) level: alert at once, no persistence needed.")
    alert_persistence_steps: int = Field(2, ge=1, description="Consecutive outside days before an alert opens.")
    alert_clear_steps: int = Field(2, ge=1, description="Consecutive normal days before an alert resolves.")
    alert_missing_after_hours: float = Field(
        24.0, gt=0, description="No reading for this long: 'missing' alert (was 48 h: a day late for field teams).")
    alert_consensus_days: int = Field(
        30, ge=7, description="Days of readings the replicate consensus learns offsets and spreads over.")
    alert_excluded_share_max: float = Field(
        0.2, gt=0, le=1, description="Share of sensors excluded at once (open fault alerts) that alerts the operators.")
    alert_readmit_days: int = Field(
        2, ge=1, description="Days a faulty sensor must agree with its siblings before it is trusted again.")
    alert_cooldown_hours: float = Field(
        24.0, ge=0, description="A recurrence this soon after an alert's resolution reopens the old alert instead "
        "of opening a new one (reminders are per incident: repeat_interval in the routes file; a resolution is "
        "announced after resolve_hold).")
    alert_escalate_after_hours: float = Field(
        48.0, gt=0, description="An alert open and unacknowledged this long is escalated (routes: escalate_to).")
    alert_lookback_days: int = Field(7, ge=1, description="Days the first detection run looks back.")
    alert_plot_days: int = Field(21, ge=3, description="Days of history in the PNG attached to an alert.")
    alert_delivery_attempts: int = Field(
        12, ge=1, description="Attempts per message before it is parked as 'failed' (kept; smmdn alerts retry).")
    alert_delivery_backoff_s: float = Field(60.0, gt=0, description="First retry delay; doubles per attempt.")
    alert_delivery_backoff_max_s: float = Field(3600.0, gt=0, description="Longest retry delay.")
    alert_delivery_lease_s: float = Field(
        600.0, gt=0, description="A message left 'sending' this long (deliverer crashed) is sent again.")
    verification_lookback_days: int = Field(
        7, ge=1, description="Valid days re-scored each run (late observations); the first run scores everything.")
    drift_window_days: int = Field(30, ge=1, description="Rolling window (valid days) of the calibration-drift test.")
    drift_coverage_min: float = Field(0.80, gt=0, lt=1, description="coverage_90 below this: calibration drift.")
    drift_coverage_max: float = Field(0.97, gt=0, le=1, description="coverage_90 above this: calibration drift.")
    drift_pit_p: float = Field(0.01, gt=0, lt=1, description="PIT-uniformity chi-square p below this: drift.")
    drift_pit_effective_n: int = Field(
        300, ge=10, description="Largest effective sample size of the PIT test: the chi-square statistic is scaled "
        "to the number of distinct (site, depth, valid day), at most this (nearby scores are correlated).")
    drift_min_pairs: int = Field(
        60, ge=1, description="Fewer independent scores (distinct site, depth, valid day) in the window since the "
        "last full retrain: no drift verdict.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}: use an IANA name such as 'Europe/Berlin'") from exc
        return value

    def model_post_init(self, context: Any, /) -> None:
        """Tell the redaction function every secret this configuration holds."""
        remember_settings(self)

    # --- derived ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """A configured directory, defaulting under ``home`` (created owner-only on first use)."""
        configured: Path | None = getattr(self, f"{name}_dir")
        directory = configured if configured is not None else self.home / name.replace("_", "-")
        if not directory.is_dir():
            for parent in reversed([directory, *directory.parents]):
                if not parent.exists():
                    parent.mkdir(mode=STATE_DIR_MODE, exist_ok=True)
        return directory

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.path('data') / 'smmdn.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` instead of mutating this one)."""
    return Settings()
