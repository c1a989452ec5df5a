"""ISMN archives (International Soil Moisture Network) -> canonical observations, sites and sensors.

Read with the ``ismn`` package, the ISMN's own reader: both download formats ("header + values" and the
CEOP "separate files" format with ``Metadata.xml`` and static-variable CSVs), as a zip or an extracted
folder. We never re-parse ``.stm`` files by hand: the package knows the formats' corners.

Mapping, and why:
- a station is a site ``<network>_<station>`` (characters a site id cannot hold become ``-``) with its
  latitude, longitude and elevation; the static variables of its shallowest sensor's layer become numeric
  site attributes (clay/sand/silt fraction and organic carbon as fractions 0–1, saturation in m3/m3) and
  text ones (``land_cover``: the ESA CCI class name; ``climate_class``: Köppen-Geiger code), stored as
  text — one-hot encoding belongs to a model that uses them;
- a sensor's ``depth_from``/``depth_to`` (m) become ``depth_cm`` = their midpoint (a 0–0.19 m cosmic-ray
  probe is 9.5 cm) and stay as sensor attributes ``depth_from_cm``/``depth_to_cm``;
- the sensor label is the instrument; several sensors of one instrument at one depth are replicates
  ``<instrument>``, ``<instrument>_2``, … (in file-name order, so labels are stable between downloads);
- every reading keeps ISMN's flag (``ismn_flag``) and the provider's (``provider_flag``) verbatim;
  ``quality/ismn_flags.py`` says what smmdn does with them. Readings without a value are counted, not kept.
- times are UTC (ISMN publishes UTC).

The package writes a metadata cache (``python_metadata/``) beside the data and extracts zip members to a
temporary folder; both go to a private temporary directory here, removed afterwards, so a read never
writes into the archive's folder (which may be read-only shared data) and leaves nothing behind.
Errors the package raises are wrapped: the ``InputError`` names the archive, the file and, where the
package says so, the line.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smmdn.errors import InputError

SM_VARIABLE = "soil_moisture"
OBS_COLUMNS = ("time", "site", "depth_cm", "sensor", "vwc", "ismn_flag", "provider_flag")
SITE_ID_BAD = re.compile(r"[^A-Za-z0-9_.\-]+")
FRACTIONS = {"clay_fraction": "clay_fraction", "sand_fraction": "sand_fraction", "silt_fraction": "silt_fraction",
             "organic_carbon": "organic_carbon_fraction"}  # ISMN: % weight -> fraction 0-1
LAND_COVER_KEYS = ("lc_2010", "lc_2005", "lc_2000", "lc_insitu")  # newest ESA CCI first
CLIMATE_KEYS = ("climate_KG", "climate_insitu")
_POSITION = re.compile(r"at position (\d+)")
FIX = ("give the archive exactly as downloaded from https://ismn.earth (zip, or its extracted folder) and "
       "replace the file named here with a fresh download")


@dataclass
class IsmnData:
    """What one archive holds: canonical observations (+ flag columns), sites and sensors."""

    observations: pd.DataFrame
    sites: pd.DataFrame
    sensors: pd.DataFrame
    missing: int = 0  # readings without a value (not kept)
    files: list[str] = field(default_factory=list)
    origin: pd.DataFrame | None = None  # file and line of each observation (same index): for errors, quarantine


def site_id(network: str, station: str) -> str:
    """The smmdn site id of an ISMN station: ``<network>_<station>``, safe characters only."""
    return SITE_ID_BAD.sub("-", f"{network}_{station}").strip("-")


def convert_ismn_archive(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                    dict[str, pd.DataFrame]]:
    """``smmdn data convert ismn``: the three canonical frames and ``sensors`` (depth_from/to, instrument)."""
    data = read_ismn(path)
    _refuse_non_numeric(data, str(path))
    obs, forcing, sites = data.observations, _no_forcing(), data.sites
    return obs, forcing, sites, {"sensors": data.sensors}


def _no_forcing() -> pd.DataFrame:
    return pd.DataFrame({"time": pd.Series([], dtype=str), "site": pd.Series([], dtype=str)})


def read_ismn(
    path: str | Path,
    *,
    networks: Iterable[str] | None = None,
    stations: Iterable[str] | None = None,
    work_dir: str | Path | None = None,
) -> IsmnData:
    """Read an ISMN archive (zip or folder), optionally only some networks and stations.

    ``work_dir`` is where the private temporary directory is made (default: the system's); nothing of it
    remains afterwards.
    """
    source = Path(path)
    if not source.exists():
        raise InputError("ISMN archive not found", where=str(source), fix="give the path of the zip or folder")
    if source.is_file() and not zipfile.is_zipfile(source):
        raise InputError("not a zip archive", where=str(source), fix=FIX)
    wanted_networks = list(networks) if networks else None
    wanted_stations = set(stations) if stations else None
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smmdn-ismn-", dir=work_dir) as tmp:
        interface = _open(source, Path(tmp), wanted_networks)
        return _collect(interface, source, wanted_stations)


def _quiet() -> contextlib.ExitStack:
    """The package prints progress (tqdm, print) and logs per file: keep the CLI's output ours."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    # the package logs every file it reads: to the root's handlers and to its own stderr handler
    for name in ("ismn", "ismn_meta_collector"):
        logger = logging.getLogger(name)
        stack.callback(setattr, logger, "propagate", logger.propagate)
        stack.callback(setattr, logger, "disabled", logger.disabled)
        logger.propagate, logger.disabled = False, True
    return stack


def _open(source: Path, tmp: Path, networks: list[str] | None):  # type: ignore[no-untyped-def]
    from ismn.interface import ISMN_Interface

    meta = tmp / "python_metadata"
    try:
        with _quiet():
            interface = ISMN_Interface(str(source), meta_path=str(meta), network=networks,
                                       temp_root=str(tmp))
    except Exception as exc:  # the package raises many kinds (ISMNError, IOError, KeyError, ValueError)
        raise InputError(f"the ismn package cannot read the archive: {type(exc).__name__}: {exc}",
                         where=str(source), fix=FIX) from exc
    _check_all_files_read(interface, source, networks, tmp)
    return interface


def _archive_stm_files(source: Path) -> list[str]:
    if source.is_dir():
        return sorted(p.relative_to(source).as_posix() for p in source.rglob("*.stm"))
    with zipfile.ZipFile(source) as zf:
        return sorted(n for n in zf.namelist() if n.lower().endswith(".stm"))


def _sensor_files(interface) -> set[str]:  # type: ignore[no-untyped-def]
    return {Path(se.filehandler.file_path).as_posix() for nw in interface.collection.iter_networks()
            for st in nw.iter_stations() for se in st.iter_sensors()}


def _check_all_files_read(interface, source: Path, networks: list[str] | None, tmp: Path) -> None:  # type: ignore[no-untyped-def]
    """The package skips a file it cannot parse (and only logs it): we refuse the archive instead, naming
    the file and the package's reason, so no station is silently missing."""
    from ismn.base import IsmnRoot
    from ismn.filehandlers import DataFile

    read = _sensor_files(interface)
    skipped = [f for f in _archive_stm_files(source) if f not in read
               and (networks is None or f.split("/", 1)[0] in networks)]
    if not skipped:
        return
    root = IsmnRoot(str(source))
    try:
        for name in skipped:
            try:
                with _quiet():
                    DataFile(root, name, temp_root=str(tmp))
            except Exception as exc:
                raise _file_error(source, name, exc, header_lines=1) from exc
        raise InputError(f"the ismn package skipped {len(skipped)} file(s): " + ", ".join(skipped[:5]),
                         where=str(source), fix=FIX)
    finally:
        root.close()


def _file_error(source: Path, name: str, exc: Exception, header_lines: int) -> InputError:
    """The package's exception as an ``InputError`` naming the file and, where it says, the line."""
    found = _POSITION.search(str(exc))
    rows = [int(found.group(1)) + 1 + header_lines] if found else None
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"ISMN file not readable: {type(exc).__name__}: {message}"
                      + (f" (line {rows[0]})" if rows else ""),
                      where=f"{source}:{name}", column="line" if rows else None, rows=rows, fix=FIX)


def _collect(interface, source: Path, stations: set[str] | None) -> IsmnData:  # type: ignore[no-untyped-def]
    from ismn.const import LANDCOVER

    land_cover_names = {code: name for name, code in LANDCOVER.items()}
    obs_parts: list[pd.DataFrame] = []
    site_rows: list[dict[str, object]] = []
    sensor_rows: list[dict[str, object]] = []
    seen_ids: dict[str, tuple[str, str]] = {}
    missing = 0
    files: list[str] = []
    for nw in interface.collection.iter_networks():
        for st in nw.iter_stations():
            if stations is not None and st.name not in stations:
                continue
            sid = site_id(nw.name, st.name)
            if sid in seen_ids and seen_ids[sid] != (nw.name, st.name):
                raise InputError(f"stations {seen_ids[sid]} and {(nw.name, st.name)} map to one site id {sid!r}",
                                 where=str(source), fix="import them with --station one at a time and rename one")
            seen_ids[sid] = (nw.name, st.name)
            sensors = sorted((se for se in st.iter_sensors() if se.variable == SM_VARIABLE),
                             key=lambda se: Path(se.filehandler.file_path).as_posix())
            if not sensors:
                continue
            labels = _labels(sensors)
            for se, label in zip(sensors, labels, strict=True):
                name = Path(se.filehandler.file_path).as_posix()
                files.append(name)
                frame, n_missing = _read_sensor(se, source, name)
                missing += n_missing
                depth_from, depth_to = _cm(se.depth.start), _cm(se.depth.end)
                depth = round((depth_from + depth_to) / 2.0, 2)
                frame = frame.assign(site=sid, depth_cm=depth, sensor=label)
                obs_parts.append(frame)
                sensor_rows.append({"site": sid, "depth_cm": depth, "sensor": label, "depth_from_cm": depth_from,
                                    "depth_to_cm": depth_to, "instrument": str(se.instrument), "file": name})
            shallowest = min(sensors, key=lambda se: (se.depth.start, se.depth.end))
            site_rows.append(_site_row(sid, nw.name, st, shallowest, land_cover_names))
    if not obs_parts:
        raise InputError("no soil-moisture sensor in the archive" + (" for the stations asked for" if stations
                                                                      else ""),
                         where=str(source), fix="check --network/--station, or download soil_moisture data")
    full = pd.concat(obs_parts, ignore_index=True)
    full = full.sort_values(["site", "depth_cm", "sensor", "time"], kind="stable").reset_index(drop=True)
    return IsmnData(full[list(OBS_COLUMNS)], pd.DataFrame(site_rows), pd.DataFrame(sensor_rows), missing, files,
                    origin=full[["file", "line"]])


def _labels(sensors: list) -> list[str]:  # type: ignore[type-arg]
    """Replicate labels: the instrument, numbered from the second sensor of one instrument at one depth."""
    seen: dict[tuple[float, float, str], int] = {}
    out = []
    for se in sensors:
        key = (_cm(se.depth.start), _cm(se.depth.end), str(se.instrument))
        seen[key] = seen.get(key, 0) + 1
        out.append(str(se.instrument) if seen[key] == 1 else f"{se.instrument}_{seen[key]}")
    return out


def _cm(metres: object) -> float:
    return round(float(metres) * 100.0, 2)  # type: ignore[arg-type]


def _read_sensor(se, source: Path, name: str) -> tuple[pd.DataFrame, int]:  # type: ignore[no-untyped-def]
    header_lines = 0 if getattr(se.filehandler, "file_type", "") == "ceop_sep" else 1
    try:
        with _quiet():
            raw = se.read_data()
    except Exception as exc:
        raise _file_error(source, name, exc, header_lines) from exc
    try:
        values = raw[SM_VARIABLE]
        flags = raw[f"{SM_VARIABLE}_flag"]
        provider = raw[f"{SM_VARIABLE}_orig_flag"]
    except KeyError as exc:
        raise InputError(f"ISMN file without column {exc}", where=f"{source}:{name}", column=str(exc),
                         fix=FIX) from exc
    times = pd.DatetimeIndex(raw.index)
    if times.tz is None:
        times = times.tz_localize("UTC")  # ISMN publishes UTC
    numeric = pd.to_numeric(values, errors="coerce")
    text = values.astype("string").str.strip()
    absent = (numeric.isna() & (text.isna() | text.str.fullmatch(r"(?i)nan|").fillna(True))).to_numpy()
    frame = pd.DataFrame({
        "time": times.tz_convert("UTC"),
        "vwc": np.where(numeric.notna(), numeric, values.astype(object)),  # text kept: validation quarantines it
        "ismn_flag": _text(flags),
        "provider_flag": _text(provider),
    })
    frame["vwc"] = frame["vwc"].astype(np.float64) if numeric.notna().all() else frame["vwc"].astype(object)
    frame["line"] = np.arange(len(frame)) + 1 + header_lines
    frame["file"] = name
    keep = ~absent
    return frame[keep].reset_index(drop=True), int((~keep).sum())


def _text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), None).astype(object).to_numpy()  # type: ignore[return-value]


def _site_row(sid: str, network: str, st, sensor, land_cover_names: dict) -> dict[str, object]:  # type: ignore[no-untyped-def,type-arg]
    meta = sensor.metadata.to_pd()

    def val(key: str) -> object:
        try:
            v = meta[(key, "val")]
        except KeyError:
            return None
        return None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "unknown" else v

    row: dict[str, object] = {"site": sid, "latitude": float(st.lat), "longitude": float(st.lon),
                              "elevation_m": float(st.elev) if st.elev is not None else float("nan")}
    for key, column in FRACTIONS.items():
        v = val(key)
        row[column] = float(v) / 100.0 if v is not None else float("nan")  # type: ignore[arg-type]
    sat = val("saturation")
    row["saturation"] = float(sat) if sat is not None else float("nan")  # type: ignore[arg-type]
    lc = next((v for v in (val(k) for k in LAND_COVER_KEYS) if v is not None), None)
    if lc is not None:
        with contextlib.suppress(TypeError, ValueError):
            lc = land_cover_names.get(int(lc), lc)  # type: ignore[call-overload]
    row["land_cover"] = None if lc is None else str(lc)
    climate = next((v for v in (val(k) for k in CLIMATE_KEYS) if v is not None), None)
    row["climate_class"] = None if climate is None else str(climate)
    row["network"] = network
    row["station"] = str(st.name)
    return row


def _refuse_non_numeric(data: IsmnData, where: str) -> None:
    bad = pd.to_numeric(data.observations["vwc"], errors="coerce").isna()
    if bad.any():
        origin = data.origin if data.origin is not None else pd.DataFrame({"file": "", "line": data.observations.index})
        first = origin.loc[bad].iloc[0]
        raise InputError("non-numeric soil-moisture values", where=f"{where}:{first['file']}", column="soil_moisture",
                         rows=[f"line {n}" for n in origin.loc[bad & (origin["file"] == first["file"]), "line"][:20]],
                         fix="repair or re-download that file; `smmdn ingest ismn` would quarantine these rows")
