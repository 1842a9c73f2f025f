#!/usr/bin/env bash
# The GPU check in one command: on a machine with an NVIDIA GPU, from the repository root,
#   1. builds ls-ops for this GPU, runs the CUDA tests and the ops benchmark against torchvision's
#      CUDA ops (scripts/check-ls-ops-cuda.sh);
#   2. measures the quickstart model's training step and tile inference on the GPU, each memory
#      layout against the reference (benchmarks/throughput.py --device cuda);
#   3. trains the quickstart recipe for 2 short epochs on the GPU with ls-train (in-process);
#   4. predicts a 24x288x288 volume with ls-predict predict.device=cuda (bf16 autocast, the
#      default predict.amp=auto), and again in float32 (predict.amp=none), and scores the first
#      against the second with ls-evaluate (the share of float32 objects matched at IoU 0.9);
# and prints the card, ops timings, training it/s and predict Mvoxel/s. Results go to $OUT
# (default: ./gpu-check); PYTHON picks the interpreter (default: python3, with the workspace
# installed). Exit status 2 where there is no usable GPU, 1 when a step fails.
set -euo pipefail

out="${OUT:-gpu-check}"
py="${PYTHON:-python3}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! card="$("$py" -c 'import torch
assert torch.cuda.is_available() and torch.version.cuda, "no CUDA device, or torch is not a CUDA build"
print(torch.cuda.get_device_name(0))')"; then
  echo "check-gpu: this machine cannot run the GPU check (see the error above)" >&2
  exit 2
fi
echo "check-gpu: $card"
start=$SECONDS
status=0

OUT="$out/ls-ops" PYTHON="$py" bash scripts/check-ls-ops-cuda.sh || status=1

"$py" benchmarks/throughput.py --device cuda --repeats 5 2>&1 | tee "$out/throughput.txt" || status=1

run=(--config-name=quickstart cluster=local cluster.use_gpu=true "data.root=$out/data"
     "trainer.runs_root=$out/runs" trainer.run_name=gpu-check trainer.epochs=2 trainer.val_every_epochs=2
     trainer.log_every_steps=1 evaluation.run_after_training=false)
"$py" -m ls_train.cli train "${run[@]}" 2>&1 | tee "$out/train.txt" || status=1

checkpoint="$(find "$out/runs/gpu-check" -maxdepth 3 -name state.pt -printf '%h\n' 2>/dev/null | sort | tail -n 1)"
volume="$out/volume_24x288x288.tif"
if [ -n "$checkpoint" ]; then
  "$py" - "$out/data/tiff/synth_000_image.tif" "$volume" <<'PY' || status=1
import sys

import numpy as np
import tifffile

tifffile.imwrite(sys.argv[2], np.tile(tifffile.imread(sys.argv[1]), (1, 3, 3)), imagej=True,
                 metadata={"axes": "ZYX"})
PY
  "$py" -m ls_train.cli predict "checkpoint=$checkpoint" "input=$volume" "output=$out/predicted.ome.zarr" \
    overwrite=true predict.device=cuda predict.progress=false 2>&1 | tee "$out/predict.txt" || status=1
  "$py" -m ls_train.cli predict "checkpoint=$checkpoint" "input=$volume" "output=$out/predicted_fp32.ome.zarr" \
    overwrite=true predict.device=cuda predict.amp=none predict.progress=false 2>&1 \
    | tee "$out/predict_fp32.txt" || status=1
  "$py" -m ls_train.cli evaluate "pred=$out/predicted.ome.zarr/labels/instances" \
    "gt=$out/predicted_fp32.ome.zarr/labels/instances" "evaluation.output_dir=$out/amp_vs_fp32" \
    > "$out/amp_vs_fp32.txt" 2>&1 || status=1
else
  echo "check-gpu: the training wrote no checkpoint; ls-predict not run" >&2
  status=1
fi

echo
echo "== check-gpu summary: $card, $((SECONDS - start)) s"
grep -h -A5 '^| setting' "$out/throughput.txt" 2>/dev/null || true
echo "training: $(grep -o '[0-9.]* it/s' "$out/train.txt" 2>/dev/null | tail -n 1 || echo '?')"
echo "prediction: $(grep -o '([0-9.]* Mvoxel/s[^)]*)' "$out/predict.txt" 2>/dev/null | tail -n 1 || echo '?') against" \
  "$(grep -o '([0-9.]* Mvoxel/s[^)]*)' "$out/predict_fp32.txt" 2>/dev/null | tail -n 1 || echo '?')"
"$py" - "$out/amp_vs_fp32/metrics.json" <<'PY' || echo "bf16 against float32: no metrics (see $out/amp_vs_fp32.txt)"
import json
import sys

s = json.load(open(sys.argv[1]))["summary"]
print(f"bf16 against float32: {s['recall@90']:.4f} of the float32 objects matched at IoU 0.9 "
      f"(goal >= 0.99), ap@50 {s['ap@50']:.4f}, ap@75 {s['ap@75']:.4f}")
PY
echo "ops: $out/ls-ops/ops_cuda.txt; CUDA tests: $out/ls-ops/test_cuda.txt"
exit "$status"
