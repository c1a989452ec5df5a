"""smmdn's own validation flags vs ISMN's flags on the sample archives: a confusion table per flag family.

Run on demand (prints Markdown; the tables in docs/results-ingest.md come from it):

    python tests/benchmarks/bench_ismn_flags.py [ARCHIVE ...]   # default: both samples in ../shared/formats/ismn

smmdn validates the readings *without* ISMN's columns (so its verdict is its own), with the default rules
(vwc in [0, 0.8], spike 0.05 m3/m3 that reverses, 24 identical readings = flatline, gap > 6 steps). Each
family of ISMN codes is set against the smmdn check that looks for the same thing; families smmdn has no
check for (frozen soil, rise without rain, saturation) are set against "any smmdn flag".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from smmdn.quality import ismn_flags
from smmdn.quality.validate import validate_observations
from smmdn.sources.ismn import read_ismn

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "ismn"
NOW = pd.Timestamp("2030-01-01T00:00Z")
# ISMN family -> (codes, the smmdn verdict it is compared with)
FAMILIES = {
    "C01/C02 range (< 0, > 0.6)": ({"C01", "C02"}, "quarantined"),
    "C03 above saturation": ({"C03"}, "any smmdn flag"),
    "D01–D03 frozen soil / air": ({"D01", "D02", "D03"}, "any smmdn flag"),
    "D04–D05 rise without rain": ({"D04", "D05"}, "any smmdn flag"),
    "D06 spike": ({"D06"}, "spike"),
    "D07–D08 break": ({"D07", "D08"}, "spike"),
    "D09–D10 plateau": ({"D09", "D10"}, "flatline"),
}


def smmdn_verdicts(obs: pd.DataFrame) -> pd.DataFrame:
    """Per reading (same order as ``obs``): quarantined, spike, flatline, gap_before, any smmdn flag."""
    frame = obs.drop(columns=["ismn_flag", "provider_flag"]).reset_index(drop=True)
    result = validate_observations(frame, now=NOW)
    key = ["site", "depth_cm", "sensor", "time"]
    clean = result.clean.assign(time=pd.to_datetime(result.clean["time"], utc=True))
    merged = frame[key].merge(clean[[*key, "quality_flag"]], on=key, how="left")
    flag = merged["quality_flag"]
    out = pd.DataFrame({"quarantined": flag.isna().to_numpy()})
    for name in ("spike", "flatline", "gap_before"):
        out[name] = flag.fillna("").str.contains(name, regex=False).to_numpy()
    out["any smmdn flag"] = out["quarantined"] | (flag.fillna("ok") != "ok").to_numpy()
    return out


def confusion(codes: pd.Series, mine: pd.Series, family: set[str]) -> dict[str, int]:
    ismn = codes.map(lambda f: bool(family & set(ismn_flags.codes(f)))).to_numpy()
    ours = mine.to_numpy()
    return {"both": int((ismn & ours).sum()), "ISMN only": int((ismn & ~ours).sum()),
            "smmdn only": int((~ismn & ours).sum()), "neither": int((~ismn & ~ours).sum())}


def main(argv: list[str]) -> int:
    archives = [Path(a) for a in argv] or sorted(SAMPLES.glob("*.zip"))
    frames = []
    t0 = time.perf_counter()
    for archive in archives:
        data = read_ismn(archive)
        frames.append(data.observations.reset_index(drop=True))
        print(f"- `{archive.name}`: {len(data.observations):,} readings, {len(data.sites)} stations, "
              f"{data.missing} without a value")
    obs = pd.concat(frames, ignore_index=True)
    verdicts = smmdn_verdicts(obs)
    print(f"\n{len(obs):,} readings; smmdn validation in {time.perf_counter() - t0:.1f} s (read + validate)\n")
    print("ISMN codes on the readings: " + ", ".join(f"{c} {n:,}" for c, n in ismn_flags.counts(obs["ismn_flag"])
                                                     .items()) + "\n")
    print("smmdn's own flags: " + ", ".join(f"{c} {int(verdicts[c].sum()):,}" for c in verdicts.columns) + "\n")
    print("| ISMN family | compared with smmdn's | both | ISMN only | smmdn only | neither | agreement "
          "| of ISMN's, smmdn finds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, (family, check) in FAMILIES.items():
        c = confusion(obs["ismn_flag"], verdicts[check], family)
        agree = (c["both"] + c["neither"]) / max(sum(c.values()), 1)
        found = c["both"] / max(c["both"] + c["ISMN only"], 1)
        print(f"| {name} | {check} | {c['both']:,} | {c['ISMN only']:,} | {c['smmdn only']:,} | {c['neither']:,} "
              f"| {agree:.2%} | {found:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
