"""Great Expectations 1.x plumbing: an ephemeral context, a pandas batch, a suite from specs, Data Docs.

Why isolated here: GX costs ~3 s to import and talks to the network for analytics unless told not to;
everything else in smmdn stays fast and offline by importing this module only when validating.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

log = logging.getLogger(__name__)

Outcome = Literal["batch", "quarantine", "flag", "info"]


@dataclass(frozen=True)
class Spec:
    """One expectation: a stable ``name`` used in summaries, the GX class, its arguments, and what a
    failing row means (``quarantine``: impossible, ``flag``: suspicious, ``batch``: unusable batch,
    ``info``: reported only)."""

    name: str
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    outcome: Outcome = "quarantine"


def _import_gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import great_expectations as gx

    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("great_expectations", "posthog")):
            logging.getLogger(name).setLevel(logging.WARNING)
    _share_template_cache()
    return gx


class _MemoryBytecodeCache:
    """A process-wide Jinja bytecode cache (compiled templates keyed by name and source checksum)."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Any) -> None:
        data = self.code.get(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)

    def dump_bytecode(self, bucket: Any) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATE_CACHE: Any = None


def _share_template_cache() -> None:
    """Let every Data Docs view reuse compiled templates.

    Why: GX 1.x builds a new Jinja ``Environment`` for every page it renders, so each Data Docs build
    recompiled ~50 templates from source (~1.5 s of a ~1.7 s validation of a small batch). A bytecode
    cache shared by those environments turns the compiles into lookups; the rendered pages are the same.
    GX is pinned exactly; if its view class changes shape, this does nothing (docs just render slower).
    """
    global _TEMPLATE_CACHE
    if _TEMPLATE_CACHE is not None:
        return
    import jinja2

    try:
        from great_expectations.render.view.view import DefaultJinjaView
    except ImportError:  # pragma: no cover - a GX layout we do not know
        return

    class Cache(_MemoryBytecodeCache, jinja2.BytecodeCache):
        pass

    _TEMPLATE_CACHE = Cache()
    original_init = DefaultJinjaView.__init__

    def init_with_cache(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        env = getattr(self, "env", None)
        if isinstance(env, jinja2.Environment) and env.bytecode_cache is None:
            env.bytecode_cache = _TEMPLATE_CACHE

    DefaultJinjaView.__init__ = init_with_cache  # type: ignore[method-assign]


def run_suite(
    frame: pd.DataFrame, suite_name: str, specs: list[Spec], docs_dir: Path | None
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """Validate ``frame`` against ``specs``; return {name: result} and the Data Docs index path."""
    gx = _import_gx()
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    actions = []
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="smmdn",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir.resolve())},
            },
        )
        from great_expectations.checkpoint import UpdateDataDocsAction

        actions.append(UpdateDataDocsAction(name="data_docs", site_names=["smmdn"]))
    source = context.data_sources.add_pandas(f"smmdn_{uuid.uuid4().hex[:8]}")
    batch_def = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for spec in specs:
        cls = getattr(gxe, spec.expectation)
        suite.add_expectation(cls(**spec.kwargs, meta={"smmdn_name": spec.name, "outcome": spec.outcome}))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}_validation", data=batch_def, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(name=f"{suite_name}_checkpoint", validation_definitions=[definition], actions=actions,
                      result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10})
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    run = next(iter(result.run_results.values()))
    out: dict[str, dict[str, Any]] = {}
    for r in run.results:
        meta = r.expectation_config.meta or {}
        name = meta.get("smmdn_name", r.expectation_config.type)
        res = r.result or {}
        entry: dict[str, Any] = {
            "expectation": r.expectation_config.type,
            "column": r.expectation_config.kwargs.get("column"),
            "outcome": meta.get("outcome"),
            "success": bool(r.success),
            "unexpected_count": int(res.get("unexpected_count") or 0),
        }
        if "observed_value" in res:
            entry["observed_value"] = _plain(res["observed_value"])
            if res["observed_value"] is None and r.expectation_config.type.endswith("_median_to_be_between"):
                entry["success"], entry["note"] = True, "no values to judge"
        if r.exception_info and r.exception_info.get("raised_exception"):
            entry["error"] = str(r.exception_info.get("exception_message"))[:300]
            entry["success"] = False
        out[name] = entry
    docs = str((docs_dir / "index.html").resolve()) if docs_dir is not None else None
    return out, docs


def _plain(value: Any) -> Any:
    """JSON-safe observed values (numpy scalars, lists)."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
