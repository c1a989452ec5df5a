"""ISMN quality flags mapped onto smmdn's quality levels (the table in docs/ingest.md).

Why a table of its own: ISMN's flags are the field's reference QC (Dorigo et al. 2013, flagit), and smmdn
must neither trust what ISMN found impossible nor throw away what ISMN only found suspicious. The
published flag stays verbatim in ``ismn_flag``; this module decides what smmdn does with the reading:

- ``quarantine``: C01 (below 0 m3/m3), C02 (above 0.6 m3/m3) — impossible, like smmdn's own range check;
- ``flagged``: C03 (above the HWSD saturation point) and D01–D10 (geophysical consistency and spectrum
  checks: spikes, breaks, plateaus) — kept with the token ``ismn_<code>`` in ``quality_flag`` and left out
  of training and detection like validation's own untrusted flags (``spike``, ``flatline``);
- ``missing``: M (no value) — not a reading; the reader drops and counts these;
- ``ok``: G (good) and U (not checked by ISMN: older downloads);
- any other code is ``flagged`` as ``ismn_unknown`` (a code we do not know is not a code we trust).

A reading can carry several codes (``D06,D07``): the most severe level wins and every flagged code
becomes a token.
"""

from __future__ import annotations

import pandas as pd

QUARANTINE, FLAGGED, MISSING, OK = "quarantine", "flagged", "missing", "ok"
FLAG_TOKEN_PREFIX = "ismn_"  # quality_flag tokens from ISMN; untrusted wherever they appear
LEVELS: dict[str, str] = {
    "C01": QUARANTINE,
    "C02": QUARANTINE,
    "C03": FLAGGED,
    **{f"D{i:02d}": FLAGGED for i in range(1, 11)},
    "M": MISSING,
    "G": OK,
    "U": OK,
}
MEANING: dict[str, str] = {
    "C01": "soil moisture < 0 m3/m3",
    "C02": "soil moisture > 0.6 m3/m3",
    "C03": "soil moisture > saturation point (HWSD)",
    "D01": "negative soil temperature (in situ)",
    "D02": "negative air temperature (in situ)",
    "D03": "negative soil temperature (GLDAS)",
    "D04": "rise without rain (in situ)",
    "D05": "rise without rain (GLDAS)",
    "D06": "spike",
    "D07": "negative break",
    "D08": "positive break",
    "D09": "low constant value after a negative break",
    "D10": "saturated plateau",
    "M": "value missing",
    "G": "good",
    "U": "not checked (undefined)",
}
_RANK = {OK: 0, FLAGGED: 1, MISSING: 2, QUARANTINE: 3}


def codes(flag: object) -> list[str]:
    """The codes of one published flag (``"D06,D07"`` → ``["D06", "D07"]``); empty for no flag."""
    if flag is None or (isinstance(flag, float) and flag != flag) or flag is pd.NA:
        return []
    return [c.strip().upper() for c in str(flag).replace(";", ",").split(",") if c.strip()]


def level(flag: object) -> str:
    """smmdn's level for one published ISMN flag (no flag at all: ``ok``)."""
    found = [LEVELS.get(c, FLAGGED) for c in codes(flag)]
    return max(found, key=_RANK.__getitem__) if found else OK


def tokens(flag: object) -> list[str]:
    """``quality_flag`` tokens for the flagged codes of one published flag."""
    return [FLAG_TOKEN_PREFIX + (c if c in LEVELS else "unknown") for c in codes(flag)
            if LEVELS.get(c, FLAGGED) == FLAGGED]


def classify(flags: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Per reading: (level, comma-joined tokens); computed once per distinct flag (a few dozen)."""
    text = flags.astype("string").fillna("")
    distinct = pd.unique(text)
    levels = {f: level(f) for f in distinct}
    joined = {f: ",".join(tokens(f)) for f in distinct}
    return text.map(levels).astype(object), text.map(joined).astype(object)


def family(code: str) -> str:
    """The flag family a code belongs to (for counts and the confusion tables): C, D, G, M, U or other."""
    return code[:1] if code[:1] in ("C", "D", "G", "M", "U") else "other"


def counts(flags: pd.Series) -> dict[str, int]:
    """How many readings carry each code (a reading with two codes counts for both)."""
    out: dict[str, int] = {}
    for flag, n in flags.astype("string").fillna("").value_counts().items():
        for c in codes(flag) or ["(none)"]:
            out[c] = out.get(c, 0) + int(n)
    return dict(sorted(out.items()))
