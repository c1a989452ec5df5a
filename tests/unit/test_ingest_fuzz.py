"""Property tests: parsers fed garbage (random or mutated real samples) raise only InputError/SourceError.

Every parser is here (USCRN hourly/daily and its shared CSV, TOA5 whole and streamed, COSMOS-UK text
and file, ISMN, Open-Meteo, SensorThings, the registry, validation), with the property that what comes
out is canonical and finite or quarantined. CI runs a small number of examples; set
``SMMDN_FUZZ_PROFILE=heavy`` for 20 times as many (see the README's test section).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smmdn.errors import InputError, SourceError
from smmdn.registry import Toa5Source, parse_registry
from smmdn.sources import cosmos, ismn, open_meteo, sensorthings, toa5, uscrn

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "formats"
EXPECTED = (InputError, SourceError)
SCALE = 20 if os.environ.get("SMMDN_FUZZ_PROFILE") == "heavy" else 1  # examples per test: CI small, heavy ×20
settings.register_profile("smmdn", deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])


def examples(n: int) -> settings:
    """``n`` examples in CI, ``20 n`` with SMMDN_FUZZ_PROFILE=heavy."""
    return settings(settings.get_profile("smmdn"), max_examples=n * SCALE)


FAST = examples(60)


def _sample(*parts: str) -> str:
    path = SHARED.joinpath(*parts)
    return path.read_text() if path.exists() else ""


HOURLY = _sample("uscrn", "CRNH0203-2023-NE_Lincoln_11_SW.head.txt")
DAILY = _sample("uscrn", "CRND0103-2020-AK_Fairbanks_11_NE.head.txt")
TOA5 = _sample("toa5", "Station_Daily.head.dat")
COSMOS_DATA = SHARED.parent / "data" / "cosmos-uk" / "SPENF-2016-11-24-2021-09-05.csv"
COSMOS = "".join(COSMOS_DATA.read_text(encoding="utf-8-sig").splitlines(keepends=True)[:40]) \
    if COSMOS_DATA.exists() else ""


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    """A real sample with random edits: characters replaced, cut short, lines dropped or repeated."""
    text = base or draw(st.text(max_size=300))
    for _ in range(draw(st.integers(0, 6))):
        if not text:
            break
        op = draw(st.sampled_from(["replace", "cut", "drop_line", "dup_line", "insert"]))
        i = draw(st.integers(0, len(text) - 1))
        if op == "replace":
            text = text[:i] + draw(st.text(min_size=1, max_size=3)) + text[i + 1 :]
        elif op == "cut":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + draw(st.text(max_size=20)) + text[i:]
        else:
            lines = text.splitlines(keepends=True)
            j = draw(st.integers(0, len(lines) - 1))
            lines = lines[:j] + lines[j + 1 :] if op == "drop_line" else lines[: j + 1] + lines[j:]
            text = "".join(lines)
    return text


def _only_expected(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    try:
        return fn(*args, **kwargs)
    except EXPECTED:
        return None


@FAST
@given(st.one_of(st.text(max_size=500), mutated(HOURLY)))
def test_hourly02_garbage(text: str) -> None:
    out = _only_expected(uscrn.parse_hourly02, text, "s")
    if out is not None:
        obs, _ = out
        assert obs["time"].notna().all() and not (obs["vwc"] <= -99).any()


@FAST
@given(st.one_of(st.text(max_size=500), mutated(DAILY)))
def test_daily01_garbage(text: str) -> None:
    _only_expected(uscrn.parse_daily01, text, "s")


@FAST
@given(st.one_of(st.binary(max_size=400), mutated(TOA5).map(str.encode)))
def test_toa5_garbage(data: bytes) -> None:
    parsed = _only_expected(toa5.parse_toa5, data)
    if parsed is not None:
        spec = Toa5Source(station="Station", utc_offset_hours=1, columns={"RH_Min": {"depth_cm": 5, "sensor": "a"}})
        batch = _only_expected(toa5.to_observations, parsed, "s", spec)
        if batch is not None:  # every record is accounted for: stored, missing or quarantined
            n_ok = len(parsed.records) - len(batch.bad_rows)
            assert len(batch.observations) + batch.missing_values == n_ok


@FAST
@given(st.one_of(st.text(max_size=500), mutated(COSMOS)))
def test_cosmos_uk_garbage(text: str) -> None:
    out = _only_expected(cosmos.parse_cosmos_csv, text, "c")
    if out is not None:  # canonical: dates, finite fractions, two replicate labels at 10 cm
        obs, forcing = out
        assert obs["time"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
        assert obs["vwc"].between(0, 1).all() and set(obs["sensor"]) <= {"TDT1", "TDT2"}
        assert {"time", "site"} <= set(forcing.columns)


def test_cosmos_uk_row_with_an_extra_field_is_refused_not_cut() -> None:
    """Found by the fuzzing above: pandas dropped the extra field (or moved the date into the index)."""
    head = "timestamp,x\nsite-id,SPENF\nsite-name,S\nparameter-id,TDT1_VWC_LEVEL2_MEAN\nparameter-name,v\n" \
           "parameter-units,%\n"
    with pytest.raises(InputError, match=r"more fields.*rows: 8"):
        cosmos.parse_cosmos_csv(head + "24/11/2016,28.2\n25/11/2016,28.1,9\n", "c.csv")
    obs, _ = cosmos.parse_cosmos_csv(head + "24/11/2016,28.2\n", "c.csv")
    assert obs["vwc"].tolist() == [pytest.approx(0.282)]


def _ismn_stm() -> str:
    """One real "header + values" file of the sample archive (the first 60 lines), or our own writer's."""
    import zipfile

    path = SHARED / "ismn" / "ismn_multinetwork_header_values.zip"
    if path.exists():
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".stm") and "node505" in n)
            text = zf.read(name).decode()
        return "\r".join(text.split("\r")[:60]) + "\r"
    from tests.helpers import ismn_archive

    return ismn_archive.stm_text(0.05, 0.05, "EC5_A", "base")


ISMN_STM = _ismn_stm()
ISMN_NAME = "SOILSCAPE/node505/SOILSCAPE_SOILSCAPE_node505_sm_0.050000_0.050000_EC5_20070101_20131231.stm"
ISMN_FAST = examples(30)


@ISMN_FAST
@given(st.one_of(st.binary(max_size=300), mutated(ISMN_STM).map(str.encode)))
def test_ismn_garbage(data: bytes) -> None:
    """An archive whose .stm holds arbitrary bytes: canonical frames or an InputError, never another
    exception; what is read is either a finite value or a value validation quarantines."""
    import tempfile
    import zipfile

    from smmdn.quality.validate import validate_observations

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "a.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(ISMN_NAME, data)
        read = _only_expected(ismn.read_ismn, archive, work_dir=Path(tmp) / "w")
        if read is None:
            return
        obs = read.observations
        assert list(obs.columns) == list(ismn.OBS_COLUMNS) and obs["time"].dt.tz is not None
        result = _only_expected(validate_observations, obs, now=pd.Timestamp("2030-01-01T00:00Z"))
        if result is not None:
            assert len(result.clean) + len(result.quarantined) == len(obs)
            clean = pd.to_numeric(result.clean["vwc"])
            assert clean.notna().all() and clean.between(0, 0.8).all()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(st.one_of(
    json_values,
    st.fixed_dictionaries({"utc_offset_seconds": json_values, "daily": st.fixed_dictionaries(
        {"time": st.lists(st.text(max_size=12) | st.just("2024-01-01"), max_size=4),
         "precipitation_sum": st.lists(json_values, max_size=4)})}),
))
def test_open_meteo_garbage(payload: object) -> None:
    _only_expected(open_meteo.parse_response, payload, [open_meteo.Location("s", 1, 2)], "daily")
    _only_expected(open_meteo.parse_response, payload, [open_meteo.Location("s", 1, 2)], "hourly")


@FAST
@given(st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {"phenomenonTime": st.text(max_size=30) | st.just("2024-01-01T00:00:00Z/2024-01-01T01:00:00Z"),
     "result": json_values})), max_size=5))
def test_sensorthings_garbage(values: list) -> None:  # type: ignore[type-arg]
    _only_expected(sensorthings.parse_observations, values, "o")
    for v in values:
        _only_expected(sensorthings.unit_scale, v, "ds")


@FAST
@given(st.one_of(st.text(max_size=300), json_values.map(json.dumps)))
def test_registry_garbage(text: str) -> None:
    _only_expected(parse_registry, text)


cells = st.one_of(st.text(max_size=12), st.sampled_from(["", "NaN", "2024-06-01", "2024-06-01T00:00Z", "0.2",
                                                         "-1", "1e309", "inf", "a"]))


@examples(12)
@given(st.lists(st.fixed_dictionaries({c: cells for c in ("time", "site", "depth_cm", "sensor", "vwc")}),
                max_size=6))
def test_validation_garbage(rows: list[dict[str, str]]) -> None:
    from smmdn.quality.validate import validate_observations

    frame = pd.DataFrame(rows, columns=["time", "site", "depth_cm", "sensor", "vwc"])
    result = _only_expected(validate_observations, frame, now=pd.Timestamp("2030-01-01T00:00Z"))
    if result is not None:  # nothing silently dropped
        assert len(result.clean) + len(result.quarantined) == len(frame)
        assert result.clean["vwc"].between(0, 0.8).all()


@pytest.fixture(scope="module")
def garbage_env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from smmdn.config import Settings
    from smmdn.store import Store
    from tests.helpers.http_server import serve

    tmp = tmp_path_factory.mktemp("fuzz")
    store = Store(f"sqlite:///{tmp / 'db.sqlite'}")
    store.init()
    registry = parse_registry("version: 1\nsites:\n  - id: s\n    name: S\n    lat: 1\n    lon: 2\n"
                              "    sources: {uscrn: {station_file: X_Y, product: daily01}}\n")
    store.upsert_sites(registry.sites_frame())
    with serve() as server:
        yield server, Settings(_env_file=None, home=tmp, uscrn_url=f"{server.url}/u", http_retries=0), registry, store
    store.dispose()


@examples(10)
@given(st.one_of(st.binary(max_size=300), mutated(DAILY).map(str.encode)))
def test_ingest_of_garbage_never_writes_part_of_a_batch(garbage_env, body: bytes) -> None:  # type: ignore[no-untyped-def]
    from smmdn.ingest import ingest_sensors
    from tests.helpers.http_server import Reply

    server, settings_, registry, store = garbage_env
    before = (store.count("observations"), store.count("forcing"), store.count("quarantine"))
    server.route("/u/daily01/2020/CRND0103-2020-X_Y.txt", Reply(body))
    [s] = ingest_sensors(store, settings_, registry, since=pd.Timestamp("2019-12-31T00:00Z"),
                         until=pd.Timestamp("2020-12-31T00:00Z"), now=pd.Timestamp("2024-01-01T00:00Z"))
    after = (store.count("observations"), store.count("forcing"), store.count("quarantine"))
    if s.status == "failed":
        assert after == before  # all or nothing
    else:
        assert s.status in ("ok", "empty")


@pytest.fixture(scope="module")
def json_server():  # type: ignore[no-untyped-def]
    from smmdn.config import Settings
    from tests.helpers.http_server import serve

    with serve() as server:
        yield server, Settings(_env_file=None, sensorthings_url=f"{server.url}/sta", open_meteo_url=f"{server.url}/om",
                               http_retries=0)


@examples(40)
@given(meta=json_values, page=st.one_of(json_values, st.fixed_dictionaries(
    {"value": st.lists(json_values, max_size=3), "@iot.nextLink": json_values})), raw=st.binary(max_size=40))
def test_adapters_on_garbage_json_raise_only_source_errors(json_server, meta, page, raw) -> None:  # type: ignore[no-untyped-def]
    from smmdn.sources.http import make_session
    from tests.helpers.http_server import Reply

    server, cfg = json_server
    session = make_session(cfg)
    server.route("/sta/Datastreams(1)", Reply(json.dumps(meta)))
    server.route("/sta/Datastreams(1)/Observations", Reply(json.dumps(page)))  # a nextLink loops here at most
    _only_expected(sensorthings.fetch_datastream, session, cfg, 1)
    server.route("/om", Reply(raw))
    _only_expected(open_meteo.fetch_open_meteo, session, cfg, [open_meteo.Location("s", 1, 2)],
                   variables=["precipitation_sum"])
    server.route("/om", Reply(json.dumps(page)))
    _only_expected(open_meteo.fetch_open_meteo, session, cfg, [open_meteo.Location("s", 1, 2)],
                   variables=["precipitation_sum"])


# --- TOA5 streamed: the path large landing files take ------------------------------------------------
TOA5_SPEC = Toa5Source(station="Station", utc_offset_hours=1,
                       columns={"RH_Min": {"depth_cm": 5, "sensor": "a"}, "AirT_Max": {"depth_cm": 10, "sensor": "b"}})


@FAST
@given(st.one_of(st.binary(max_size=600), mutated(TOA5).map(lambda t: t.encode("utf-8", "surrogatepass"))),
       st.integers(1, 7))
def test_toa5_streamed_garbage(data: bytes, size: int) -> None:
    """Arbitrary bytes through the streaming reader in chunks of ``size`` records: canonical rows with
    finite values, every record stored, missing or quarantined; the sha256 is the bytes'; the chunks
    hold what the whole-file parser reads; nothing but SourceError/InputError escapes."""
    try:
        reader = toa5.Toa5Reader(io.BytesIO(data), "f.dat")
        chunks = list(reader.chunks(size))
    except EXPECTED:
        return
    assert reader.sha256() == hashlib.sha256(data).hexdigest()
    assert all(len(c.records) <= size for c in chunks)
    whole = toa5.parse_toa5(data)
    assert [r for c in chunks for r in c.records] == whole.records
    for chunk in chunks:
        batch = _only_expected(toa5.to_observations, chunk, "s", TOA5_SPEC, "f.dat", False)
        if batch is None:
            continue
        obs = batch.observations
        assert list(obs.columns) == ["time", "site", "depth_cm", "sensor", "vwc"]
        assert obs["time"].dt.tz is not None and obs["time"].notna().all()
        assert all(math.isfinite(v) for v in obs["vwc"])
        assert batch.bad_rows["reason"].notna().all()
        readable = len(chunk.records) - len(batch.bad_rows)
        assert len(obs) + batch.missing_values == 2 * readable


@FAST
@given(st.lists(st.one_of(st.text(max_size=25), st.sampled_from(
    ["2024-01-05 00:00:00", "2024-1-5 0:0:0", "2024-01-05 00:00:00.5", "2024-01-05T00:00:00", "9999-12-31 23:00:00",
     "0001-01-01 00:00:00", "2024-02-30 00:00:00", " 2024-01-05 00:00:00", "05/01/2024 13:00", "2024-01-05 24:00:00",
     "2024-01-05 00:00:60", "２０２４-01-05 00:00:00"])), max_size=12),
       st.sampled_from([list(toa5.Toa5Source.model_fields["timestamp_formats"].default_factory()),
                        ["%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S"], ["%Y-%m-%dT%H:%M:%S"]]))
def test_toa5_column_times_match_the_one_by_one_parser(stamps: list[str], formats: list[str]) -> None:
    """The column-at-once TIMESTAMP reader decides every stamp exactly as ``parse_timestamp`` does."""
    values, ok = toa5._parse_times(stamps, formats)
    for stamp, value, parsed in zip(stamps, values, ok, strict=True):
        try:
            expected = toa5.parse_timestamp(stamp, formats)
        except ValueError:
            assert not parsed, stamp
        else:
            assert parsed and pd.Timestamp(value) == expected, stamp


@FAST
@given(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["NAN", "nan", "", "INF", "-inf", "1e999", "1_0",
                                                                "0x1", " 0.2 ", "Nan", "٣"])), max_size=12))
def test_toa5_column_floats_match_python_float(cells: list[str]) -> None:
    values, missing, unusable = toa5._floats(cells)
    for cell, value, gone, bad in zip(cells, values, missing, unusable, strict=True):
        if cell in toa5.MISSING:
            assert gone and not bad
            continue
        try:
            expected = float(cell)
        except ValueError:
            assert bad, cell
            continue
        assert bad == (not math.isfinite(expected)), cell
        if not bad:
            assert value == expected


# --- the file-level readers: USCRN's shared daily CSV and COSMOS-UK exports -------------------------
USCRN_CSV = SHARED.parent / "data" / "uscrn"


def _uscrn_csv_sample() -> str:
    files = sorted(USCRN_CSV.glob("*.csv")) if USCRN_CSV.is_dir() else []
    if not files:
        return "wban,lst_date,soil_moisture_5\n"
    with files[0].open(encoding="utf-8") as fh:
        return "".join(line for _, line in zip(range(30), fh, strict=False))


@FAST
@given(st.one_of(st.binary(max_size=400), mutated(_uscrn_csv_sample()).map(lambda t: t.encode("utf-8", "replace"))))
def test_uscrn_daily_csv_garbage(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    from smmdn.sources.uscrn_csv import read_uscrn_daily_csv

    path = tmp_path_factory.mktemp("uscrn") / "daily.csv"
    path.write_bytes(data)
    out = _only_expected(read_uscrn_daily_csv, path)
    if out is not None:
        obs = out[0]
        assert {"time", "site", "depth_cm", "sensor", "vwc"} <= set(obs.columns)
        assert pd.to_numeric(obs["vwc"]).map(math.isfinite).all()


@FAST
@given(st.one_of(st.binary(max_size=400), mutated(COSMOS).map(lambda t: t.encode("utf-8", "replace"))))
def test_cosmos_uk_file_garbage(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cosmos") / "SITE-export.csv"
    path.write_bytes(data)
    out = _only_expected(cosmos.read_cosmos_csv, str(path))
    if out is not None:
        obs = out[0]
        assert obs["vwc"].between(0, 1).all()


# --- the streamed landing path end to end: all or nothing per file ----------------------------------
@pytest.fixture(scope="module")
def landing_env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from smmdn.config import Settings
    from smmdn.store import Store

    tmp = tmp_path_factory.mktemp("landing-fuzz")
    store = Store(f"sqlite:///{tmp / 'db.sqlite'}")
    store.init()
    registry = parse_registry("version: 1\nsites:\n  - id: s\n    name: S\n    lat: 1\n    lon: 2\n    sources:\n"
                              "      toa5: {station: Station, utc_offset_hours: 1, columns: "
                              "{RH_Min: {depth_cm: 5, sensor: a}, AirT_Max: {depth_cm: 10, sensor: b}}}\n")
    store.upsert_sites(registry.sites_frame())
    yield Settings(_env_file=None, home=tmp, landing_dir=tmp / "landing"), registry, store
    store.dispose()


@examples(10)
@given(st.one_of(st.binary(max_size=300), mutated(TOA5).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_streamed_landing_of_garbage_is_all_or_nothing(landing_env, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """A garbage file streamed in chunks of 2 records: stored whole, or rejected/failed with nothing written."""
    import time as _time

    from smmdn.ingest import ingest_landing

    settings, registry, store = landing_env
    landing = settings.path("landing")
    landing.mkdir(parents=True, exist_ok=True)
    path = landing / f"f{hashlib.sha256(data).hexdigest()[:12]}.dat"
    path.write_bytes(data)
    os.utime(path, (_time.time() - 3600, _time.time() - 3600))
    before = (store.count("observations"), store.count("quarantine"), store.count("validation_runs"))
    summaries = ingest_landing(store, settings, registry, now=pd.Timestamp("2030-01-01T00:00Z"), chunk_rows=4,
                               only={path.name})
    after = (store.count("observations"), store.count("quarantine"), store.count("validation_runs"))
    assert [s.status for s in summaries] in (["ok"], ["empty"], ["rejected"], ["skipped"])
    if summaries[0].status in ("rejected", "skipped"):
        assert after == before
