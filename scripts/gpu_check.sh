#!/usr/bin/env bash
# The prepared device check (issue 26): run this first on any GPU the project is lent, then fix what fails.
# One GPU, at most 8 minutes: the fast test subset on CUDA, a few bf16 iterations of every method at ViT-S/16 224 px
# under torchrun (NCCL), one resumed run, and gpu_check.json (images/s and peak memory per method next to MoCo v3)
# in $OUT, or benchmarks/results/ without it. Arguments go to scripts/gpu_check.py (see its docstring).
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import sslzoo.training" 2>/dev/null || python -m pip install -q --no-deps -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
exec timeout --signal=INT --kill-after=20 470 python scripts/gpu_check.py "$@"
