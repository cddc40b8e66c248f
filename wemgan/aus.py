"""The 17 facial Action Units (AUs) that WEM-GAN edits, in OpenFace order.

Intensities inside wemgan are always in [0, 1]: OpenFace's 0-5 intensity divided by 5.
A relative edit (the generator's condition) is u_rel = u_target - u_source in [-1, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip
NUM_AUS = len(AU_NAMES)

AU_DESCRIPTIONS: dict[str, str] = {
    "AU01": "inner brow raiser",
    "AU02": "outer brow raiser",
    "AU04": "brow lowerer",
    "AU05": "upper lid raiser",
    "AU06": "cheek raiser",
    "AU07": "lid tightener",
    "AU09": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU25": "lips part",
    "AU26": "jaw drop",
    "AU45": "blink",
}

# Grouping used by UIs (sliders) and by SynthFACS: which half of the face an AU moves.
UPPER_FACE_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU45")
LOWER_FACE_AUS: tuple[str, ...] = tuple(n for n in AU_NAMES if n not in UPPER_FACE_AUS)

# OpenFace 2.x CSV intensity columns ("AU01_r", ...), 0-5 scale.
OPENFACE_COLUMNS: tuple[str, ...] = tuple(f"{name}_r" for name in AU_NAMES)
OPENFACE_MAX_INTENSITY = 5.0


def from_openface(intensities: np.ndarray | Sequence[float]) -> np.ndarray:
    """OpenFace 0-5 intensities -> wemgan [0, 1] (divided by 5, clipped), float32."""
    values = np.asarray(intensities, dtype=np.float32) / OPENFACE_MAX_INTENSITY
    return np.clip(values, 0.0, 1.0)


def to_openface(aus: np.ndarray | Sequence[float]) -> np.ndarray:
    """wemgan [0, 1] intensities -> OpenFace 0-5 scale, float32."""
    return np.asarray(aus, dtype=np.float32) * OPENFACE_MAX_INTENSITY


def _prototype(**intensities: float) -> np.ndarray:
    vector = np.zeros(NUM_AUS, dtype=np.float32)
    for name, value in intensities.items():
        vector[AU_NAMES.index(name)] = value
    vector.flags.writeable = False  # presets are shared constants
    return vector


# The eight AffectNet categories as AU vectors, after the EMFACS prototypes
# (Friesen & Ekman 1983). AUs outside our 17 are dropped (AU16 in disgust, AU24 in anger);
# contempt's unilateral R12A+R14A becomes a weak bilateral 12+14.
EXPRESSIONS: dict[str, np.ndarray] = {
    "Neutral": _prototype(),
    "Happy": _prototype(AU06=0.6, AU12=0.8, AU25=0.3),  # 6+12
    "Sad": _prototype(AU01=0.6, AU04=0.5, AU15=0.6, AU17=0.3),  # 1+4+15
    "Surprise": _prototype(AU01=0.7, AU02=0.7, AU05=0.6, AU25=0.5, AU26=0.7),  # 1+2+5B+26
    "Fear": _prototype(
        AU01=0.6, AU02=0.5, AU04=0.5, AU05=0.6, AU07=0.3, AU20=0.6, AU25=0.4, AU26=0.4
    ),  # 1+2+4+5+7+20+26
    "Disgust": _prototype(AU09=0.7, AU10=0.5, AU15=0.4, AU17=0.4),  # 9+15(+16), 10 variant
    "Anger": _prototype(AU04=0.7, AU05=0.4, AU07=0.6, AU17=0.3, AU23=0.6),  # 4+5+7+23
    "Contempt": _prototype(AU12=0.3, AU14=0.6),  # R12A+R14A
}


def expression(name: str) -> np.ndarray:
    """The AU vector of an expression preset, by case-insensitive name."""
    for key, vector in EXPRESSIONS.items():
        if key.lower() == name.strip().lower():
            return vector.copy()
    raise ValueError(f"unknown expression {name!r}; choose one of {', '.join(EXPRESSIONS)}")


_AU_NAME = re.compile(r"^AU0*(\d+)$")


def canonical_au_name(name: str) -> str:
    """'au12', 'AU12', 'AU1' -> 'AU12' / 'AU01'; ValueError for anything else."""
    match = _AU_NAME.match(str(name).strip().upper())
    canonical = f"AU{int(match.group(1)):02d}" if match else None
    if canonical not in AU_NAMES:
        raise ValueError(f"unknown Action Unit {name!r}; valid names are {', '.join(AU_NAMES)}")
    return canonical


def au_vector(
    spec: Mapping[str, float] | Sequence[float] | np.ndarray | str,
    *,
    base: np.ndarray | None = None,
    low: float = 0.0,
    high: float = 1.0,
    what: str = "aus",
) -> np.ndarray:
    """Validate an AU specification and return it as float32[17] in OpenFace order.

    spec: a mapping {"AU12": 0.8, ...} (AUs not named keep their value from `base`, or 0),
          a sequence of 17 values, or an expression preset name ("Happy").
    low, high: the allowed value range ([0, 1] for intensities, [-1, 1] for changes).
    what: the argument's name, used in error messages.
    """
    if isinstance(spec, str):
        return expression(spec)
    if isinstance(spec, Mapping):
        vector = np.zeros(NUM_AUS, np.float32) if base is None else np.array(base, np.float32)
        for name, value in spec.items():
            vector[AU_NAMES.index(canonical_au_name(name))] = _check_value(value, f"{what}[{name!r}]", low, high)
        return vector
    values = np.asarray(spec, dtype=np.float64)
    if values.shape != (NUM_AUS,):
        raise ValueError(
            f"{what} must hold {NUM_AUS} values in the order {', '.join(AU_NAMES)} "
            f"(or be a dict such as {{'AU12': 0.8}}); got shape {values.shape}"
        )
    for name, value in zip(AU_NAMES, values, strict=True):
        _check_value(value, f"{what}[{name!r}]", low, high)
    return values.astype(np.float32)


def _check_value(value: object, label: str, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} is {number}; AU values must be finite numbers")
    if not low <= number <= high:
        raise ValueError(f"{label} = {number} is outside [{low}, {high}]")
    return number


def au_dict(vector: np.ndarray | Sequence[float]) -> dict[str, float]:
    """float[17] -> {"AU01": value, ...} in OpenFace order."""
    return {name: float(value) for name, value in zip(AU_NAMES, vector, strict=True)}
