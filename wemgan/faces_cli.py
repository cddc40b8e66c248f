"""Command line of wemgan.faces: `python -m wemgan.faces_cli derive-template DATA_DIR ...`.

A module of its own because the package imports wemgan.faces: `python -m wemgan.faces` would run a
second copy of an already imported module (Python warns about it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from wemgan.faces import derive_template


def main(argv: Sequence[str] | None = None) -> None:
    """derive-template: the mean landmark positions of a dataset's training crops (the face template)."""
    parser = argparse.ArgumentParser(prog="python -m wemgan.faces_cli", description="Face alignment tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    derive = commands.add_parser("derive-template", help="mean landmark positions of a dataset's training crops")
    derive.add_argument("data_dir", help="datasets parquet folder (e.g. ../shared/data/faces-au)")
    derive.add_argument("--samples", type=int, default=2000)
    derive.add_argument("--seed", type=int, default=0)
    derive.add_argument("--output", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    result = derive_template(args.data_dir, args.samples, args.seed)
    text = "{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in result.items()) + "\n}"
    if args.output:
        with tempfile.NamedTemporaryFile("w", dir=args.output.parent or ".", delete=False, suffix=".tmp") as tmp:
            tmp.write(text + "\n")
        os.replace(tmp.name, args.output)
    print(text)
    print(f"face_template={json.dumps(result['template'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
