"""sslmode in SMMDN_DATABASE_URL reaches libpq (the test server has no TLS, so `require` must fail)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from smmdn.store import Store

pytestmark = pytest.mark.postgres


def test_sslmode_in_the_url_is_honoured(pg_url: str) -> None:
    plain = Store(f"{pg_url}?sslmode=disable")
    assert plain.count("sites") == 0
    plain.dispose()
    demanding = Store(f"{pg_url}?sslmode=require&connect_timeout=5")
    with pytest.raises(sa.exc.OperationalError, match=r"(?i)ssl"):
        demanding.count("sites")
    demanding.dispose()
