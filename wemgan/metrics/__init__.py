"""Evaluation metrics of the paper (§4.2), one small module each; `python -m wemgan.evaluate` runs them.

reconstruction  L1, PSNR, SSIM (self-reconstruction, Table 4)
acd             identity: dlib face-recognition embedding distance (Table 3)
ed              expression: L2 between target and measured AUs (Table 3); AU-estimator error
fid_is          FID and IS from a user-given Inception network (Table 5)
paired          SynthFACS: the edit against the exact target render

A metric whose optional dependency is missing is reported as unavailable with the reason
(the *_unavailable functions), never as 0.
"""

from .acd import acd_unavailable, content_distances
from .ed import estimator_errors, expression_distances, read_openface_aus
from .fid_is import feature_statistics, frechet_distance, inception_score, inception_unavailable
from .paired import ground_truth, paired_scores
from .reconstruction import PSNR_CAP, l1, psnr, ssim, ssim_unavailable, to_uint8, to_unit

__all__ = [
    "PSNR_CAP",
    "acd_unavailable",
    "content_distances",
    "estimator_errors",
    "expression_distances",
    "feature_statistics",
    "frechet_distance",
    "ground_truth",
    "inception_score",
    "inception_unavailable",
    "l1",
    "paired_scores",
    "psnr",
    "read_openface_aus",
    "ssim",
    "ssim_unavailable",
    "to_uint8",
    "to_unit",
]
