"""Hub folders: a trained WEMGAN -> config.json + model.safetensors + README.md (model card).

Used by train_accelerate.py at the end of a run, by hub/export.py (checkpoint -> folder)
and hub/push.py (upload). Folders are written to a temporary sibling and renamed into
place, so a crash never leaves a half-written model that from_pretrained would pick up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .model import PAPER_URL, REPO_URL, WEMGAN

UTKFACE_LICENCE = (
    "Trained on UTKFace face crops (with OpenFace-style AU labels), released for **non-commercial research "
    "purposes only**; the copyright of each photo stays with its owner. This model inherits that restriction: "
    "do not use it commercially."
)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete training checkpoints of a run, oldest first: run_dir/checkpoints/checkpoint-N.

    In-progress checkpoints carry a .tmp suffix until they are renamed, so they never match."""
    found = Path(run_dir, "checkpoints").glob("checkpoint-*")
    return sorted(
        (p for p in found if re.fullmatch(r"checkpoint-\d+", p.name)), key=lambda p: int(p.name.split("-")[1])
    )


def newest_part(run_dir: str | Path, part: str) -> Path:
    """A training run's `part` folder ("inference", "renderer"): the run's own (written when it
    ended), else the newest complete checkpoint's."""
    run = Path(run_dir)
    if (run / part / "model.safetensors").is_file():
        return run / part
    found = list_checkpoints(run)
    if not found:
        raise FileNotFoundError(
            f"{run} holds no {part}/ and no complete checkpoint (expected {run}/checkpoints/checkpoint-N)"
        )
    return found[-1] / part


def data_licence(dataset: str) -> tuple[str, str]:
    """(Hub licence id, sentence for the card) for a training data source."""
    if dataset == "synthfacs":
        return "apache-2.0", "Trained on SynthFACS, procedurally rendered faces: no real person is depicted."
    if "faces-au" in dataset or "utkface" in dataset.lower():
        return "other", UTKFACE_LICENCE
    return "other", f"Trained on `{dataset}`: the model inherits the licence of that data; check it before use."


def model_config(model: WEMGAN) -> dict[str, Any]:
    """The model's constructor arguments (config.json) without its provenance: the architecture,
    to build a copy or a variant from."""
    return {k: v for k, v in model._hub_mixin_config.items() if k != "provenance"}  # type: ignore[attr-defined]


EDITOR_NOTE = (
    "**The edits are made by the landmark editor** (`editor`): a LandmarkRegressor (distilled from dlib's"
    " 68-point predictor) reads the face's landmarks, the AU-to-landmark motion fitted on real faces"
    " (`python -m wemgan.landmark_fit fit`, scaled by `editor.motion_strength` at run time) moves them,"
    " the face is warped along them, the inside of a mouth it opens is drawn, and with"
    " `editor.appearance` the smile's skin patterns fitted on real faces shade it. No part of it was trained"
    " against an AU network."
)


def renderer_note(brow_skin: bool = True) -> str:
    """What a trained Renderer does in a model, for its card; brow_skin: RendererConfig.brow_skin."""
    mouth = "the inside of the mouth when the lips move (teeth, tongue, lips closing over teeth)"
    where = (
        f"{mouth} and the bare skin under a rising brow; lips, lids and brows themselves are the warp's."
        if brow_skin
        else f"{mouth}; lips, lids and brows, and the skin a rising brow uncovers, are the warp's"
        " (`renderer.brow_skin` false)."
    )
    return (
        "**A trained Renderer draws what the motion reveals** (`renderer`): the paper's generator with a mask"
        " and the target landmarks' contours as extra inputs, trained by landmark-guided masked reconstruction"
        " of real faces with D_I and D_H as critics (`train_accelerate.py --objective render`). It redraws only"
        f" what an edit reveals: {where}"
    )


def card_tags(model: WEMGAN) -> list[str]:
    """The Hub tags of what the model holds: "gan" only where a generator trained against critics is in it."""
    tags = ["facial-expression-editing", "action-units", "wem-gan"]
    if model.editor is not None:
        tags.append("landmark-editing")
    if model.generator is not None or model.renderer is not None:
        tags += ["gan", "wavelet"]
    return tags


def model_card(model: WEMGAN, extra_sections: dict[str, str] | None = None) -> str:
    """A model card from the model's config and provenance (dataset, command, steps, ...)."""
    info = model.provenance
    licence, data_text = data_licence(str(info.get("dataset", "unknown")))
    config = model_config(model)
    renderer_lines = []
    if model.renderer is not None:
        brow_skin = model.model_config.renderer.brow_skin
        renderer_lines = [renderer_note(brow_skin), renderer_time(info.get("renderer", {})), ""]
    front = {
        "library_name": "wemgan",
        "license": licence,
        "pipeline_tag": "image-to-image",
        "tags": card_tags(model),
    }
    if licence == "other":
        front["license_name"] = "inherited-from-training-data"
    lines = ["---", *(_yaml_line(k, v) for k, v in front.items()), "---", ""]
    lines += [
        "# WEM-GAN facial expression editing model",
        "",
        f"WEM-GAN ([paper]({PAPER_URL})) edits facial expressions by 17 relative Action Units. "
        f"Code and usage: {REPO_URL}.",
        "",
        "```python",
        "from wemgan import WEMGAN",
        "",  # formatted as ruff formats Markdown code blocks: the card is checked in
        'model = WEMGAN.from_pretrained("path/or/hub-id")',
        'edited = model.edit(face, aus={"AU12": 0.8, "AU06": 0.6})',
        "```",
        "",
        "## Training data",
        "",
        data_text,
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True),
        "```",
        "",
        "## Training",
        "",
        *([EDITOR_NOTE, ""] if model.editor is not None else []),
        *renderer_lines,
        *(f"- **{key}**: `{value}`" for key, value in sorted(info.items()) if key != "config"),
    ]
    if "config" in info:
        lines += ["", "<details><summary>Resolved training configuration</summary>", "", "```json"]
        lines += [json.dumps(info["config"], indent=2, sort_keys=True), "```", "", "</details>"]
    for title, body in (extra_sections or {}).items():
        lines += ["", f"## {title}", "", body]
    return "\n".join(lines) + "\n"


def trained_for(record: dict) -> str:
    """How long a renderer trained, from its training record: "79,500 steps, 17.3 CPU-hours" (what was recorded)."""
    steps = f"{record['steps']:,} steps" if "steps" in record else "an unknown number of steps"
    return f"{steps}, {record['cpu_hours']:.1f} CPU-hours" if "cpu_hours" in record else steps


def renderer_time(record: dict) -> str:
    """How long the renderer trained, from its training record (train_accelerate.py --objective render)."""
    if "cpu_hours" not in record:
        return "Its training time was not recorded."
    return (f"It trained for {trained_for(record)} (one process's CPU time, summed over resumes and "
            f"`--init_renderer` starts).")  # fmt: skip


def _yaml_line(key: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{key}:\n" + "\n".join(f"- {item}" for item in value)
    return f"{key}: {value}"


def write_hub_folder(
    model: WEMGAN, out_dir: str | Path, card: str | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Write config.json, model.safetensors and README.md to out_dir, atomically.

    dtype: store the weights in this dtype (e.g. torch.float16 to halve the size).
    An existing out_dir is replaced only once the new folder is complete.
    """
    with staged_folder(out_dir) as staging:
        source = model if dtype is None else _copy_as(model, dtype)
        (staging / "README.md").write_text(card or model_card(model))  # written first: the mixin keeps it
        source.save_pretrained(staging)
    return Path(out_dir)


@contextmanager
def staged_folder(out_dir: str | Path) -> Iterator[Path]:
    """A temporary sibling of out_dir to write a folder into. When the block ends without error it
    replaces out_dir (an existing one only then); on an error it is removed and out_dir is kept."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder is meant to be shared
    try:
        yield staging
        for file in staging.iterdir():  # the Hub client writes its temp files owner-only
            file.chmod(0o644)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out_dir, old)
            os.replace(staging, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_renderer_folder(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(training record, weights) of a Renderer folder that train_accelerate.py --objective render
    (or hub/export.py --renderer) wrote: config.json (record["config"]: RendererConfig fields) and
    model.safetensors."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder} holds no renderer: give a run's or a checkpoint's renderer/ folder "
                                "(model.safetensors + config.json from --objective render)")  # fmt: skip
    record = json.loads((folder / "config.json").read_text())
    return record, safetensors.torch.load_file(str(folder / "model.safetensors"))


def _copy_as(model: WEMGAN, dtype: torch.dtype) -> WEMGAN:
    copy = WEMGAN(**model._hub_mixin_config)  # type: ignore[attr-defined]
    copy.load_state_dict(model.state_dict())
    return copy.to(dtype)


def push_folder(folder: str | Path, repo_id: str, *, repo_type: str = "model", private: bool = False) -> str:
    """Upload a Hub folder (model or Space) to repo_id; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    kwargs = {"space_sdk": "gradio"} if repo_type == "space" else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **kwargs)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type)
    return str(getattr(commit, "commit_url", commit))
