"""An overall deadline per HTTP request: a trickling upstream cannot hold a run past it (real loopback server)."""

from __future__ import annotations

import time

import pytest

from smmdn.config import Settings
from smmdn.errors import SourceUnreachable
from smmdn.sources.http import get, make_session, read_text
from tests.helpers.http_server import Reply, serve


def test_a_trickling_server_fails_within_the_deadline() -> None:
    """1 byte every 2 s keeps every socket read under the 5 s read timeout; the 3 s deadline still ends it."""
    settings = Settings(_env_file=None, http_read_timeout_s=5.0, http_deadline_s=3.0, http_retries=0)
    with serve() as server:
        server.route("/slow", Reply("x" * 100, trickle_s=2.0))
        started = time.monotonic()
        with pytest.raises(SourceUnreachable, match=r"within 3 s.*SMMDN_HTTP_DEADLINE_S"):
            get(make_session(settings), f"{server.url}/slow", settings=settings, setting="uscrn_url")
        elapsed = time.monotonic() - started
    assert elapsed < 3.0 + 0.5, elapsed  # the last read waits only for what is left of the deadline


def test_a_prompt_answer_is_read_whole_within_the_deadline() -> None:
    settings = Settings(_env_file=None, http_deadline_s=3.0, http_retries=0)
    body = "line\n" * 200_000  # 1 MB, many socket reads
    with serve() as server:
        server.route("/big", Reply(body))
        response = get(make_session(settings), f"{server.url}/big", settings=settings, setting="uscrn_url")
        assert read_text(response, setting="uscrn_url") == body


def test_a_truncated_body_is_still_an_error_naming_the_url() -> None:
    settings = Settings(_env_file=None, http_deadline_s=3.0, http_retries=0)
    with serve() as server:
        server.route("/cut", Reply("0123456789" * 10, truncate_to=15))
        with pytest.raises(SourceUnreachable, match=r"truncated.*127\.0\.0\.1"):
            response = get(make_session(settings), f"{server.url}/cut", settings=settings, setting="uscrn_url")
            read_text(response, setting="uscrn_url")
