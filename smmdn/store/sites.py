"""Site facts other roles read through the store: each site's local-standard-time offset.

Daily labels of observations and forcing use the site's local standard time (USCRN's convention), so
detection, verification and the cycle's inputs all need the same offsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smmdn.store.store import Store


def site_offsets(store: Store) -> dict[str, float]:
    """Local-standard-time offset in hours per site (0 where the registry gives none)."""
    sites = store.read_sites()
    out: dict[str, float] = {}
    for site, attrs in zip(sites["site"], sites["attributes"], strict=True):
        value = (attrs or {}).get("lst_utc_offset_hours")
        out[str(site)] = float(value) if value is not None else 0.0
    return out
