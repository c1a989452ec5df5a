"""Validation pages an operator can open offline: every run keeps its own self-contained page, the index
lists them all (newest first), and headless Chromium shows styled tables with the expectation rows and
nothing on the console — no CDN, no script needed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from smmdn.quality.validate import validate_observations
from tests.helpers.browser import render
from tests.unit.test_ingest_validation import NOW, RULES, _planted

PROBE = ("<script>addEventListener('load',()=>{const th=document.querySelector('th');"
         "document.body.dataset.thBackground=th?getComputedStyle(th).backgroundColor:'none';"
         "document.body.dataset.rows=document.querySelectorAll('tr').length-1})</script>")


def _probed(page: Path, into: Path) -> Path:
    """A copy of ``page`` with a probe that reports the computed style (the page itself carries no script)."""
    copy = into / page.name
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return copy


def test_every_run_keeps_an_offline_page_listed_in_the_index(tmp_path: Path) -> None:
    docs = tmp_path / "data-docs" / "toa5"
    frame = _planted()
    first = validate_observations(frame, RULES, now=NOW, docs_dir=docs)
    second = validate_observations(frame.iloc[: len(frame) // 2], RULES, now=NOW, docs_dir=docs)
    pages = sorted((tmp_path / "data-docs" / "runs").rglob("*.html"))
    assert len(pages) == 2 and {str(p.resolve()) for p in pages} == {first.data_docs, second.data_docs}

    index = tmp_path / "data-docs" / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "2 run(s) kept" in text and text.count(">result</a>") == 2
    assert not re.search(r"(?:src=|href=)['\"]?https?://", text)

    probes = tmp_path / "probes"
    probes.mkdir()
    shown = render(_probed(index, index.parent))
    assert shown.console == []
    assert 'data-th-background="rgb(240, 244, 248)"' in shown.dom and 'data-rows="2"' in shown.dom

    run_page = Path(first.data_docs)
    shown = render(_probed(run_page, run_page.parent), screenshot=tmp_path / "run.png")
    expectations = len([k for k in first.summary["expectations"] if k != "dtypes"])  # dtypes: not a GX check
    rows = re.search(r"data-rows=\"(\d+)\"", shown.dom)
    assert shown.console == [] and rows and int(rows.group(1)) == expectations, (rows, expectations)
    assert "vwc_within_limits" in shown.dom and "failed" in shown.dom and "observations" in shown.dom
    assert (tmp_path / "run.png").stat().st_size > 5_000
    shutil.rmtree(probes)
