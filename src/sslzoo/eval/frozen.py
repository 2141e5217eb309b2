"""What every frozen-feature extraction shares: the hash of the weights (cache keys) and the CPU forward chunk."""

from __future__ import annotations

import hashlib

import torch

# On CPU a forward pass over a whole batch of 256 keeps activations far larger than the caches: ViT-T/2 at 32 px ran
# at 45 % of the machine's matmul rate with 256 images per pass and at 60-80 % with about 4096 tokens per pass
# (benchmarks/features.py). Batches are therefore fed to the model in chunks of about this many tokens on CPU.
CPU_TOKENS_PER_PASS = 4096


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of the model's state dict (names, dtypes, shapes and bytes of every parameter and buffer)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\t{t.dtype}\t{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()
