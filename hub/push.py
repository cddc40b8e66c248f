"""Upload a Hub folder: the model (hub/default) or the demo Space (hub/space).

huggingface-cli login          # or HF_TOKEN=...
python hub/push.py model hub/default --repo you/wemgan
python hub/push.py space hub/space --repo you/wemgan-demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wemgan.export import push_folder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["model", "space"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--repo", required=True, help="repo id, e.g. you/wemgan")
    parser.add_argument("--private", action="store_true")
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    required = ["README.md"] + (["config.json", "model.safetensors"] if args.kind == "model" else ["app.py"])
    missing = [name for name in required if not (args.folder / name).is_file()]
    if missing:
        raise SystemExit(f"{args.folder} is not a {args.kind} folder: missing {', '.join(missing)}")
    print(push_folder(args.folder, args.repo, repo_type=args.kind, private=args.private))


if __name__ == "__main__":
    main(parse_args())
