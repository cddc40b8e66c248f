"""Train WEM-GAN (G + D_I + D_H) with Hugging Face Accelerate — not implemented yet.

The training script arrives with the training issue: WGAN-GP with n_critic 4,
λ 150/150/30, Adam 1e-4 β (0.5, 0.999), batch 16, 50 epochs with linear decay from
epoch 31, mixed precision, checkpoint/resume and Hub export. The networks and losses it
will use are already in wemgan/generator.py, wemgan/discriminators.py and wemgan/losses.py.
Until then this script refuses to run rather than pretend to train.
"""

import sys


def main() -> int:
    print(
        "train_accelerate.py: training is not implemented yet (see the training issue). "
        "The model, critics and losses are in wemgan/; inference works with WEMGAN.from_pretrained.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
