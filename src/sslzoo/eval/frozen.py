"""What every frozen-feature extraction shares: the cache file of a key (weights hash, dataset fingerprint, …), the
decoded tensors behind a dataset, and the CPU forward chunk."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .. import files
from ..data import DecodedDataset, DecodedSplit
from ..errors import SslzooError

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


def dataset_fingerprint(dataset: Any, cache_key: Optional[str]) -> str:
    """What keys ``dataset`` in a feature cache; refused where neither the dataset nor ``cache_key`` says."""
    fingerprint = getattr(dataset, "fingerprint", None)
    if fingerprint is None and cache_key is None:
        raise SslzooError(
            f"A {type(dataset).__name__} has no fingerprint to key the feature cache by: pass cache_key= "
            "(a string that changes whenever the dataset does), or use sslzoo.data.open_dataset."
        )
    return str(fingerprint)


def feature_cache_file(key: dict[str, str], cache_dir: Optional[Union[str, Path]], prefix: str = "") -> Path:
    """The cache file of a feature key: ``<cache>/features/<prefix><sha256 of the key>.safetensors``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    folder = Path(cache_dir).expanduser() if cache_dir is not None else files.cache_dir()
    return folder / "features" / f"{prefix}{digest}.safetensors"


def decoded_split(dataset: Any) -> Optional[DecodedSplit]:
    """The decoded tensors behind ``dataset`` where its items are the raw uint8 images."""
    if isinstance(dataset, DecodedSplit):
        return dataset
    if isinstance(dataset, DecodedDataset) and dataset.transform is None:
        return dataset.split
    return None
