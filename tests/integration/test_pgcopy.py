"""The numpy binary COPY encoder, checked by the real server reading it back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest

from smmdn.store.pgcopy import Field, encode

FIELDS = [
    Field("t", "timestamptz", ("t",)),
    Field("site", "text", ("site",)),
    Field("depth", "float8", ("depth",)),
    Field("lead", "int4", ("lead",)),
    Field("big", "int8", ("big",)),
    Field("ok", "bool", ("ok",)),
    Field("tag", "text", ("tag",)),
    Field("w", "float4[]", ("w0", "w1", "w2")),
    Field("x", "float4", ("x",)),
]


def _frame(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    sites = ["A", "Bé", "ÇCC", 'a, "quoted"\tsite', "", "NA", "x" * 70]  # lengths 1..70 and empty
    w = rng.dirichlet(np.ones(3), n)
    return pd.DataFrame(
        {
            "t": pd.Timestamp("1999-12-31 23:00", tz="Europe/Berlin")
            + pd.to_timedelta(rng.integers(-(10**12), 10**12, n), unit="us"),
            "site": rng.choice(sites, n),
            "depth": rng.choice([5.0, 10.5, 100.0], n),
            "lead": rng.integers(-5, 400, n),
            "big": rng.integers(-(2**60), 2**60, n),
            "ok": rng.random(n) > 0.5,
            "tag": rng.choice(["v1", "version-22"], n),
            "w0": w[:, 0],
            "w1": w[:, 1],
            "w2": w[:, 2],
            "x": rng.normal(size=n),
        }
    )


@pytest.fixture
def conn(pg_url: str):  # type: ignore[no-untyped-def]
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as c:
        c.execute(
            "CREATE TEMP TABLE t_copy (t timestamptz, site text, depth float8, lead int4, big int8, ok bool,"
            " tag text, w real[], x real)"
        )
        yield c


def test_server_reads_back_every_value_exactly(conn) -> None:  # type: ignore[no-untyped-def]
    frame = _frame().reset_index(names="row")
    payload = encode(frame, [Field("row", "int8", ("row",)), *FIELDS])
    assert payload is not None
    conn.execute("ALTER TABLE t_copy ADD COLUMN row int8")
    with (
        conn.cursor() as cur,
        cur.copy("COPY t_copy (row, " + ", ".join(f.name for f in FIELDS) + ") FROM STDIN (FORMAT BINARY)") as cp,
    ):
        for chunk in payload:
            cp.write(chunk)
    got = pd.DataFrame(
        conn.execute("SELECT row, t, site, depth, lead, big, ok, tag, w, x FROM t_copy ORDER BY row").fetchall(),
        columns=["row", "t", "site", "depth", "lead", "big", "ok", "tag", "w", "x"],
    )
    assert len(got) == len(frame)
    assert (pd.to_datetime(got["t"], utc=True) == frame["t"].dt.tz_convert("UTC")).all()
    for column in ("site", "depth", "lead", "big", "ok", "tag"):
        assert got[column].tolist() == frame[column].tolist(), column
    w = np.array(got["w"].tolist()).astype(np.float32)
    np.testing.assert_array_equal(w, frame[["w0", "w1", "w2"]].to_numpy().astype(np.float32))
    np.testing.assert_array_equal(got["x"].to_numpy(np.float32), frame["x"].to_numpy().astype(np.float32))


def test_empty_frame_is_a_valid_stream(conn) -> None:  # type: ignore[no-untyped-def]
    payload = encode(_frame().iloc[:0], FIELDS)
    assert payload is not None
    with (
        conn.cursor() as cur,
        cur.copy("COPY t_copy (" + ", ".join(f.name for f in FIELDS) + ") FROM STDIN (FORMAT BINARY)") as cp,
    ):
        cp.write(b"".join(payload))
    assert conn.execute("SELECT count(*) FROM t_copy").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [("site", None), ("x", np.nan), ("w1", np.nan), ("t", pd.NaT), ("lead", 1.5)],
)
def test_what_it_cannot_encode_is_left_to_the_row_path(column: str, value: object) -> None:
    """NULLs and mismatched dtypes return None (the caller then uses psycopg's write_row), never bad bytes."""
    frame = _frame(20)
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    if column == "lead":
        frame[column] = frame[column].astype(float)
    assert encode(frame, FIELDS) is None
