"""docs/operations-guide.md: the sections operators need, files that exist, commands that exist."""

from __future__ import annotations

import argparse
import re

import pytest

from smmdn.cli import build_parser
from tests.deploy.conftest import REPO

GUIDE = REPO / "docs" / "operations-guide.md"
# Written by the flows work; the guide names them ahead of time.
PENDING_FILES = {"prefect.yaml", "infra/prefect/gpu-k8s-job-template.json"}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_guide_has_every_section() -> None:
    text = GUIDE.read_text()
    headings = {h.strip().lower() for h in re.findall(r"^#{2,3} (.+)$", text, re.M)}
    for required in (
        "architecture", "production setup", "schedules", "reruns and backfills", "reading artifacts and data docs",
        "routing per team", "acknowledging and silencing", "models: promoting and rolling back", "backups",
        "troubleshooting", "how it scales",
    ):  # fmt: skip
        assert any(h.startswith(required) for h in headings), required
    assert "```mermaid" in text and "flowchart" in text
    assert any(h.startswith("quickstart") for h in headings)


def test_files_the_guide_names_exist() -> None:
    text = GUIDE.read_text()
    named = set(
        re.findall(
            r"(?<![\w/.-])((?:infra|docker|docs|scripts|tests|smmdn)/[\w./-]+\.\w+|\.env\.example|prefect\.yaml)", text
        )
    )
    assert {"infra/backup.sh", "infra/restore.sh", "infra/db-users.sh", "docker/compose.yaml"} <= named
    missing = {p for p in named if not (REPO / p).exists()} - PENDING_FILES
    assert not missing, f"the guide names files that do not exist: {sorted(missing)}"


def test_smmdn_commands_in_the_guide_exist() -> None:
    text = GUIDE.read_text()
    # Commands only: at the start of a code line or of inline code (not "kubectl -n smmdn create").
    used = set(re.findall(r"(?:^|`)smmdn (?:-v )?([a-z]+)(?: ([a-z]+))?", text, re.M))
    top = _subcommands(build_parser())
    pending = sorted({cmd for cmd, _ in used if cmd not in top})
    for command, action in sorted(used):
        if command in top and action:
            actions = _subcommands(top[command])
            if actions:
                assert action in actions, f"`smmdn {command} {action}` is in the guide but not in the CLI"
    assert {"db", "quarantine"} <= {cmd for cmd, _ in used} and "db" in top
    if pending:
        pytest.skip(f"commands named in the guide, not built yet: {', '.join(pending)}")


def _deployments() -> dict[str, dict]:
    """``flow/deployment`` → its prefect.yaml entry (the flow name read from the entrypoint's ``@flow``)."""
    import yaml

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    found = {}
    for dep in spec["deployments"]:
        path, func = dep["entrypoint"].split(":")
        source = (REPO / path).read_text(encoding="utf-8")
        # other decorators may stand between ``@flow(...)`` and the function (daily's explained_errors)
        flow = re.search(rf'@flow\(name="([^"]+)"(?:(?!\ndef ).)*?\ndef {func}\(', source, re.S)
        assert flow, dep["entrypoint"]
        found[f"{flow.group(1)}/{dep['name']}"] = dep
    return found


def test_schedules_table_matches_prefect_yaml() -> None:
    """Every deployment of prefect.yaml is in the guide's table with its pool and cron; nothing else is."""
    text = GUIDE.read_text()
    section = text[text.index("## Schedules"):text.index("## Reruns and backfills")]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([\w-]+/[\w-]+)` \|.*$", section, re.M)}
    deployments = _deployments()
    assert set(rows) == set(deployments), (sorted(rows), sorted(deployments))
    for name, dep in deployments.items():
        row = rows[name]
        assert f"| `{dep['work_pool']['name']}` |" in row, name
        crons = [s["cron"] for s in dep.get("schedules") or []]
        for cron in crons:
            assert f"`{cron}`" in row, (name, cron)
        assert all(s.get("timezone") == "UTC" for s in dep.get("schedules") or []), name  # the table says UTC
        if not crons:
            assert "on demand" in row, name
    assert "UTC" in section


def test_deployment_names_the_guide_quotes_exist() -> None:
    text = GUIDE.read_text()
    quoted = set(re.findall(r"prefect deployment (?:run|schedule \w+) '([^']+)'", text))
    assert quoted and quoted <= set(_deployments()), sorted(quoted - set(_deployments()))
    assert "infra/prefect/deploy.sh" in text and "<to be finalised>" not in text
