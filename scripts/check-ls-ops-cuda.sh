#!/usr/bin/env bash
# Builds ls-ops with its CUDA kernels for this machine's GPU, then runs the CUDA tests and the
# CUDA benchmark. Run from the repository root on a machine with a GPU, torch (a CUDA build),
# nvcc, CMake >= 3.26, ninja, scikit-build-core, pytest and torchvision. Results go to $OUT
# (default: ./ls-ops-cuda-check): build_info.json, test_cuda.txt, ops_cuda.txt, ops_cuda.json.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail

out="${OUT:-ls-ops-cuda-check}"
py="${PYTHON:-python3}"
mkdir -p "$out"

if ! arch="$("$py" -c 'import torch
assert torch.cuda.is_available() and torch.version.cuda, "no CUDA device, or torch is not a CUDA build"
major, minor = torch.cuda.get_device_capability()
print(f"{major}{minor}-real")')"; then
  echo "check-ls-ops-cuda: this machine cannot run the CUDA kernels (see the error above)" >&2
  exit 2
fi
echo "building ls-ops for sm_${arch%-real} ..."
LS_OPS_CUDA=ON LS_OPS_CUDA_ARCHITECTURES="$arch" \
  "$py" -m pip install --quiet --no-build-isolation --no-deps --force-reinstall packages/ls-ops
"$py" -c 'import json, ls_ops; print(json.dumps(ls_ops.build_info(), indent=2))' | tee "$out/build_info.json"

status=0
"$py" -m pytest -q -p no:cacheprovider packages/ls-ops/tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt" \
  || status=1
"$py" benchmarks/ops.py --device cuda --json "$out/ops_cuda.json" 2>&1 | tee "$out/ops_cuda.txt" || status=1
exit "$status"
