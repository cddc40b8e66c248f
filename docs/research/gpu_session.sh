#!/usr/bin/env bash
# The prepared script for a lent GPU machine (the device tool: 15 minutes a session, one call of at
# most 10). It measures the training step's throughput and trains the renderer from
# hub/renderer-candidate on a carried sample of faces-au, and brings both back under $OUT.
#
# Here, once per machine (the subset and wheels live in .gpu/, which .git/info/exclude ignores):
#   echo /.gpu/ >> .git/info/exclude
#   python docs/research/gpu_subset.py --data ../shared/data/faces-au --out .gpu/faces-au --megabytes 17
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl \
#       datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19    # the GPU image lacks `datasets`
# Dry run on this CPU (a minute, nothing kept): GPU_DRY_RUN=1 RENDER_MINUTES=0.3 bash docs/research/gpu_session.sh
# On the GPU, at once when `status` says a machine is lent (one call, about 8 minutes):
#   run(command="bash docs/research/gpu_session.sh", carry=[".gpu"], timeout_s=590)
# Then here: the renderer in $OUT/renderer is scored like any (../runs/compose.sh, realism_probe.py, photo_sheet.py).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-session}
RENDER_MINUTES=${RENDER_MINUTES:-4}  # the renderer run's budget (process CPU time, about wall time on a GPU)
BATCH=${BATCH:-64}                   # faces a step: the GPU is idle at the CPU runs' 16
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
if ! python3 -c "import datasets" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # wemgan from this tree, not installed
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
    python3 -c "import torch, datasets, accelerate, pyarrow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'datasets', datasets.__version__, 'accelerate', accelerate.__version__, 'pyarrow', pyarrow.__version__)"
} 2>&1 | tee "$OUT/machine.txt"
python3 -c "import wemgan.data.datasets" || exit 1  # the run below needs it: stop before spending the budget

# 1. The paper's training step (G + D_I + D_H), samples/s and MFU: the figures the issue asks for.
if [ -z "${GPU_DRY_RUN:-}" ]; then
    timeout 150 python3 bench/train_step.py --presets paper cpu --precisions bf16 --cycles 10 2>&1 | tee "$OUT/train_step.txt"
fi

# 2. The renderer, as ../runs' long run trains it (train_accelerate.py --objective render), batch $BATCH.
rm -rf /tmp/gpu-run
timeout $((${RENDER_MINUTES%.*} * 60 + 180)) accelerate launch --num_processes 1 --num_machines 1 --dynamo_backend no \
    --mixed_precision bf16 train_accelerate.py --objective render --landmark_regressor hub/default \
    --dataset .gpu/faces-au --init_renderer hub/renderer-candidate --upsample resize --ema_decay 0.999 \
    --learning_rate 2e-4 --train_batch_size "$BATCH" --dataloader_num_workers 4 --max_train_steps 1000000 \
    --max_cpu_minutes "$RENDER_MINUTES" --checkpointing_steps 1000000 --sample_steps 1000000 \
    --render_window 64 --lambda_adversarial 1.0 --render_masks edits --render_centre_colour \
    --output_dir /tmp/gpu-run 2>&1 | tr '\r' '\n' | grep -v '^train: ' | tee "$OUT/render.log"
cp /tmp/gpu-run/metrics.jsonl "$OUT/render-metrics.jsonl"
mkdir -p "$OUT/renderer" && cp /tmp/gpu-run/renderer/* "$OUT/renderer/"
ls -la "$OUT" "$OUT/renderer"
