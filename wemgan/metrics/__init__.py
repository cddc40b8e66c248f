"""Evaluation metrics of the paper (§4.2), one small module each; `python -m wemgan.evaluate` runs them.

reconstruction  L1, PSNR, SSIM (self-reconstruction, Table 4)
acd             identity: dlib face-recognition embedding distance (Table 3)
ed              expression: L2 between target and measured AUs (Table 3); AU-estimator error
fid_is          FID and IS from a user-given Inception network (Table 5)
paired          SynthFACS: the edit against the exact target render
face_region     the face ellipse of an aligned crop, where chroma and speckle measure
chroma          chroma ratio: colour change per brightness change of an edit (colour blotches)
speckle         speckle share: the share of an edit's change above a 1.5 px blur (dot patterns)
motion_compensated  both, of what is left once the source is moved onto the edit (tells painting from warping)
geometry        dlib 68-landmark changes (lip corners, mouth, brows, lids) and their real-face calibration
reference       the measures on a filmed real expression change and on a plain darkening
realism         a fresh classifier's held-out accuracy telling edits from real faces of other people

A metric whose optional dependency is missing is reported as unavailable with the reason
(the *_unavailable functions), never as 0.
"""

from .acd import acd_unavailable, content_distances
from .chroma import chroma_ratios, pooled_chroma_ratio
from .ed import estimator_errors, expression_distances, read_openface_aus
from .face_region import face_mask
from .fid_is import feature_statistics, frechet_distance, inception_score, inception_unavailable
from .geometry import (
    AU_MEASURE,
    following,
    geometry_changes,
    geometry_measures,
    geometry_unavailable,
    landmarks68,
    natural_effects,
)
from .motion_compensated import motion_compensation_unavailable, moved_sources, pooled_moved_measures
from .paired import ground_truth, paired_scores
from .reconstruction import PSNR_CAP, l1, psnr, ssim, ssim_unavailable, to_uint8, to_unit
from .reference import reference_points
from .speckle import pooled_speckle_share, speckle_shares

__all__ = [
    "AU_MEASURE",
    "PSNR_CAP",
    "acd_unavailable",
    "chroma_ratios",
    "content_distances",
    "estimator_errors",
    "expression_distances",
    "face_mask",
    "feature_statistics",
    "following",
    "frechet_distance",
    "geometry_changes",
    "geometry_measures",
    "geometry_unavailable",
    "ground_truth",
    "inception_score",
    "inception_unavailable",
    "l1",
    "landmarks68",
    "motion_compensation_unavailable",
    "moved_sources",
    "natural_effects",
    "paired_scores",
    "pooled_chroma_ratio",
    "pooled_moved_measures",
    "pooled_speckle_share",
    "psnr",
    "read_openface_aus",
    "reference_points",
    "speckle_shares",
    "ssim",
    "ssim_unavailable",
    "to_uint8",
    "to_unit",
]
