"""Model folders written before 2026-12-06, when one Generator class held both the paper's network
and the landmark editor (flat config.json: generator_output, prior_only, estimator_channels, ...).

`legacy_model` turns such a config and state dict into today's (wemgan.config): a prior-only
model becomes the LandmarkEditor, whose motion_strength was then baked into its fits and is now
applied at run time; a paper generator keeps its weights under the same names. The research
variants that drew by mask or flow were removed; their folders are refused with a clear error.
An editor written before 2026-12-07 has no jaw reading: it gets an empty one, and reads AU26 with the
estimator as it did (LandmarkEditor.read_jaw_drop).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .aus import NUM_AUS

ESTIMATOR_KEYS = {"estimator_channels": "channels", "estimator_max_channels": "max_channels",
                  "estimator_calibration_knots": "calibration_knots"}  # fmt: skip
GENERATOR_KEYS = ("base_channels", "max_channels", "skip_levels", "skip_kind", "au_fusion", "norm", "upsample")
# Fields of the old flat config that meant nothing for the two kinds kept (warp-generator switches).
DROPPED_KEYS = ("zero_gate", "stretch_gate", "shading", "motion_prior", "generator_output", "flow_resolution",
                "mouth_cavity", "prior_only", "appearance")  # fmt: skip
EDITOR_FITS = ("motion_basis", "appearance_maps")  # baked in at motion_strength: divided back out


def is_legacy(config: dict[str, Any]) -> bool:
    return any(key in config for key in (*ESTIMATOR_KEYS, *GENERATOR_KEYS, "generator_output", "prior_only"))


def legacy_model(config: dict[str, Any], state: dict[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(today's constructor arguments, state dict) for a folder's config.json and weights; a
    folder of today's format comes back unchanged."""
    if not is_legacy(config):
        return config, state
    old = dict(config)
    new: dict[str, Any] = {key: old[key] for key in ("image_size", "provenance", "face_template") if key in old}
    new["estimator"] = {field: old[key] for key, field in ESTIMATOR_KEYS.items() if key in old}
    if old.get("prior_only"):
        strength = float(old.get("provenance", {}).get("prior_changes", {}).get("motion_strength", 1.0))
        new["editor"] = {
            "motion_strength": strength,
            "mouth_cavity": bool(old.get("mouth_cavity")),
            "appearance": bool(old.get("appearance")),
            "flow_resolution": old.get("flow_resolution", 32),
        }
        renamed = {}
        for name, value in state.items():
            if name.startswith("generator."):
                part = name.removeprefix("generator.")
                value = value.float() / strength if part in EDITOR_FITS else value
                name = "editor." + part
            renamed[name] = value
        return new, renamed
    if old.get("generator_output", "image") != "image" or old.get("motion_prior"):
        raise ValueError(
            f"this model folder holds a research variant (generator_output={old.get('generator_output')!r}, "
            f"motion_prior={old.get('motion_prior', False)}) that wemgan no longer builds: load it with the "
            "wemgan of commit 060beb0 (2026-12-05), or export its run again"
        )
    new["generator"] = {key: old[key] for key in GENERATOR_KEYS if key in old}
    return new, state


def without_jaw_reading(config: dict[str, Any], state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The state with an empty editor.jaw_reading where an editor's has none (written before 2026-12-07)."""
    if config.get("editor") is None or "editor.jaw_reading" in state:
        return state
    return {**state, "editor.jaw_reading": torch.zeros(NUM_AUS + 1)}
