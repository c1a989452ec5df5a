"""The model the day runs on: the champion, or — when its artifact cannot be loaded — the previous good one.

Why: a champion whose checkpoint is missing or unreadable (storage outage, truncated copy) would leave
the day without forecasts and therefore without detection. The previous good versions are the retired
champions, newest promotion first; the day runs on the first that loads and says so (``fallback_from``),
so the flow can raise the operators' ``model_fallback`` alert. Statuses are not changed: the champion is
tried again every day, and the alert resolves itself once it loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from smmdn.config import Settings
from smmdn.errors import ModelError

if TYPE_CHECKING:
    from smmdn.store import Store

log = logging.getLogger(__name__)


@dataclass
class ServingModel:
    version: str
    model: Any  # smmdn.model.TrainedModel
    fallback_from: str | None = None  # the champion that could not be loaded
    error: str | None = None  # why it could not

    def details(self) -> dict[str, Any]:
        return {"champion": self.fallback_from or self.version, "serving": self.version, "error": self.error}


def previous_good(store: Store, champion: str) -> list[dict[str, Any]]:
    """Retired champions with an artifact, most recently promoted first."""
    known = store.model_versions()
    if known.empty:
        return []
    good = known[(known["status"] == "retired") & (known["version"] != champion)
                 & known["artifact_uri"].fillna("").astype(bool) & known["promoted_at"].notna()]
    good = good.assign(_at=pd.to_datetime(good["promoted_at"], utc=True)).sort_values("_at", ascending=False)
    return good.drop(columns="_at").to_dict("records")


def serving_model(store: Store, settings: Settings, champion: dict[str, Any]) -> ServingModel:
    """Load ``champion`` or fall back (``ModelError`` when no version at all can be loaded)."""
    from smmdn.modelfiles import load_model_uri

    try:
        return ServingModel(champion["version"], load_model_uri(champion["artifact_uri"], settings))
    except Exception as exc:  # ModelError, OSError, a remote store's own errors: all mean "cannot serve it"
        error = f"{type(exc).__name__}: {exc}"
    log.warning("champion %s cannot be loaded (%s): trying the previous good versions", champion["version"], error)
    tried = []
    for row in previous_good(store, champion["version"]):
        try:
            model = load_model_uri(row["artifact_uri"], settings)
        except Exception as exc:
            tried.append(f"{row['version']}: {type(exc).__name__}: {exc}")
            continue
        log.warning("serving %s instead of the champion %s", row["version"], champion["version"])
        return ServingModel(row["version"], model, fallback_from=champion["version"], error=error)
    raise ModelError(f"champion {champion['version']} cannot be loaded ({error}) and no previous good version "
                     f"loads either ({'; '.join(tried) or 'none retired'}); fix the model storage "
                     f"(SMMDN_SHARED_STORAGE_URL) or promote a loadable version with `smmdn models promote`")
