"""``memcontrol import``: an imagefolder from MIMIC-CXR-JPG or a MedMNIST .npz file."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    imp = command("import", "write an imagefolder from MIMIC-CXR-JPG or a MedMNIST .npz file", _cmd_import)
    imp.add_argument("source", choices=("mimic-cxr", "medmnist"))
    imp.add_argument("input", help="MIMIC-CXR-JPG root folder, or the .npz file")
    imp.add_argument("--output_dir", required=True, help="new imagefolder to write")
    imp.add_argument("--resolution", type=int, help="mimic-cxr: resize the shorter side to this")
    imp.add_argument("--limit", type=int, help="mimic-cxr: import at most this many images")
    imp.add_argument("--flag", help="medmnist: dataset flag (pneumoniamnist, chestmnist) for label names")


def _cmd_import(args: argparse.Namespace) -> None:
    from memcontrol.data.importers import import_medmnist, import_mimic_cxr

    if args.source == "mimic-cxr":
        out = import_mimic_cxr(args.input, args.output_dir, resolution=args.resolution, limit=args.limit)
    else:
        out = import_medmnist(args.input, args.output_dir, flag=args.flag)
    print(f"imagefolder written to {out}")
