"""``smmdn data convert <source>``: source files -> canonical observations.csv, forcing.csv, sites.csv."""

from __future__ import annotations

import argparse

CONVERTERS = {
    "uscrn-daily": ("smmdn.sources.uscrn_csv", "read_uscrn_daily_csv", "shared pre-parsed USCRN daily01 CSV"),
    "cosmos": ("smmdn.sources.cosmos", "read_cosmos_csv", "COSMOS-UK portal daily CSV export"),
    "ismn": ("smmdn.sources.ismn", "convert_ismn_archive", "ISMN archive: the zip or its extracted folder"),
}
FOLDER_INPUT = {"ismn"}  # sources whose --input may be a folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="data utilities (convert source files to canonical CSVs)")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    conv = sub.add_parser("convert", help="convert a source file to observations.csv, forcing.csv, sites.csv")
    conv_sub = conv.add_subparsers(dest="source", metavar="SOURCE")
    for name, (_, _, text) in CONVERTERS.items():
        c = conv_sub.add_parser(name, help=text)
        c.add_argument("--input", required=True, help="source file" + (" or folder" if name in FOLDER_INPUT else ""))
        c.add_argument("--out", required=True, help="output directory")
        c.set_defaults(handler=_convert, converter=name)


def _convert(args: argparse.Namespace) -> int:
    import importlib
    from pathlib import Path

    from smmdn.errors import InputError
    from smmdn.schema import format_times, normalise_observations

    module, func, _ = CONVERTERS[args.converter]
    folder_ok = args.converter in FOLDER_INPUT and Path(args.input).is_dir()
    if not Path(args.input).is_file() and not folder_ok:
        raise InputError("input file not found", where=args.input,
                         fix="give the path of the source file" + (" or folder" if args.converter in FOLDER_INPUT
                                                                   else ""))
    frames = getattr(importlib.import_module(module), func)(args.input)
    obs, forcing, sites = frames[:3]
    extra = frames[3] if len(frames) > 3 else {}  # more tables a source has (ISMN: sensors.csv)
    checked = normalise_observations(obs, args.input)  # refuse to write anything non-canonical
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    obs = obs.assign(time=format_times(checked["time"]))
    obs.to_csv(out / "observations.csv", index=False)
    forcing.to_csv(out / "forcing.csv", index=False)
    sites.to_csv(out / "sites.csv", index=False)
    for name, frame in extra.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    print(f"{len(obs)} observations, {len(forcing)} forcing rows, {len(sites)} sites -> {out}")
    return 0
