"""The runners of the classification protocols: a model and a dataset in, a table of accuracies out.

``knn:dino`` and ``knn:instdisc`` (frozen features, weighted kNN) and ``linear:frozen`` (a linear head on cached
features), listed with the dense protocols in :data:`~sslzoo.eval.protocol_table.PROTOCOLS`, each run on the train and
test splits of a dataset: a path, a dataset name, or the CIFAR-10 sample shipped
inside the package (``"sample"``), which lets the library be tried on a fresh machine with no network.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from ..data import check_classes, eval_transform, open_dataset
from ..errors import WeightsNotFoundError
from ..models import create_model
from .. import registry
from ..validation import int_at_least
from .features import extract_features, weights_sha256
from .knn import clamp_k, knn_classify
from .linear import linear_probe
from .options import check_knn_eval_options, check_linear_eval_options  # noqa: F401 - re-exported (the CLI's names)
from .protocol_table import PROTOCOLS, SAMPLE

_logger = logging.getLogger(__name__)

RANDOM_INIT_SEED = 0


def _random_init(name: str) -> torch.nn.Module:
    # seeded, so a random-init reference is the same model every time (and its features are cached)
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_INIT_SEED)
        return create_model(name, pretrained=False)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    name: str
    weights: str  # a description of where the weights came from


def load_for_eval(name: str, *, random_init: bool = False, pretrained_file: Optional[str] = None) -> LoadedModel:
    """Build ``name`` with its weights; a registry architecture with no published weights is used at random init.

    A name whose weights are registered but cannot be found is an error, never a silent random init.
    """
    if random_init:
        return LoadedModel(_random_init(name), name, f"random init (seed {RANDOM_INIT_SEED}, requested)")
    if pretrained_file is not None:
        return LoadedModel(create_model(name, pretrained_file=pretrained_file), name, f"file {pretrained_file}")
    if registry.is_registered(name) and registry.resolve(name).weights is None:
        _logger.warning("%s has no published weights yet; evaluating it at random init.", name)
        return LoadedModel(_random_init(name), name, f"random init (seed {RANDOM_INIT_SEED}, no published weights)")
    try:
        model = create_model(name, pretrained=True)
    except WeightsNotFoundError as e:
        raise WeightsNotFoundError(f"{e}\nTo evaluate the architecture at random init, pass --random-init.") from e
    sha = (getattr(model, "sslzoo_cfg", None) or {}).get("sha256")
    return LoadedModel(model, name, f"pretrained (sha256 {sha[:12]}…)" if sha else "pretrained")


def as_loaded(model: Union[str, torch.nn.Module, LoadedModel]) -> LoadedModel:
    """A name is loaded with its weights; a module is described by the name it was created under."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str):
        return load_for_eval(model)
    cfg = getattr(model, "sslzoo_cfg", None) or {}
    name = cfg.get("name") or (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    sha = cfg.get("sha256")
    return LoadedModel(model, str(name), f"given (sha256 {sha[:12]}…)" if sha else "given")


def _features(model: torch.nn.Module, data: str, split: str, pool: str, batch_size: int, cache: bool, device,
              dataset=None):
    dataset = open_dataset(data, split) if dataset is None else dataset
    return extract_features(
        model, dataset, pool=pool, batch_size=batch_size, device=device, cache_key="" if cache else None
    )


def _train_test_features(model: torch.nn.Module, data: str, pool: str, batch_size: int, cache: bool, device):
    """Features and labels of train and test, once their classes can give an accuracy (checked before any work)."""
    train, test = open_dataset(data, "train"), open_dataset(data, "test")
    check_classes(train.labels, test.labels, train.classes, data)
    return (*_features(model, data, "train", pool, batch_size, cache, device, train),
            *_features(model, data, "test", pool, batch_size, cache, device, test))


def _accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (pred == labels).float().mean().item()


def knn_eval(
    model: Union[str, torch.nn.Module],
    data: str = SAMPLE,
    *,
    preset: str = "knn:dino",
    k: Optional[Sequence[int]] = None,
    temperature: Optional[float] = None,
    pool: str = "cls",
    batch_size: int = 256,
    cache: bool = True,
    device: Optional[str] = None,
) -> dict[str, Any]:
    """kNN accuracy of a frozen model: features of the train split are the bank, the test split the queries.

    Returns:
        ``{"protocol", "model", "weights", "data", "pool", "k", "temperature", "top1": {k: accuracy %},
        "num_train", "num_test", "seconds"}``.
    """
    check_knn_eval_options(preset=preset, k=k, temperature=temperature, batch_size=batch_size)
    loaded = as_loaded(model)
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = _train_test_features(loaded.model, data, pool, batch_size, cache, device)
    defaults = PROTOCOLS[preset].defaults
    ks = clamp_k(k or defaults["k"], len(train_y))
    temp = defaults["temperature"] if temperature is None else temperature
    preds = knn_classify(train_x, train_y, test_x, k=ks, temperature=temp)
    return {
        "protocol": preset,
        "model": loaded.name,
        "weights": loaded.weights,
        "data": data,
        "pool": pool,
        "k": list(ks),
        "temperature": temp,
        "top1": {int(kk): _accuracy(p, test_y) for kk, p in preds.items()},
        "num_train": len(train_y),
        "num_test": len(test_y),
        "seconds": time.perf_counter() - start,
    }


def linear_eval(
    model: Union[str, torch.nn.Module],
    data: str = SAMPLE,
    *,
    pool: str = "cls",
    batch_size: int = 256,
    cache: bool = True,
    device: Optional[str] = None,
    **probe_kwargs: Any,
) -> dict[str, Any]:
    """``linear:frozen``: a linear head on cached frozen features, learning rate chosen on a split of train."""
    check_linear_eval_options(batch_size=batch_size, **probe_kwargs)
    loaded = as_loaded(model)
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = _train_test_features(loaded.model, data, pool, batch_size, cache, device)
    result = linear_probe(train_x, train_y, test_x, test_y, **probe_kwargs)
    result.update(model=loaded.name, weights=loaded.weights, data=data, pool=pool, seconds=time.perf_counter() - start)
    return result


def save_features(
    model: Union[str, torch.nn.Module, LoadedModel], data: str, output: str, *, splits: Sequence[str] = ("train", "test"),
    pool: str = "cls", batch_size: int = 256, device: Optional[str] = None,
) -> dict[str, Any]:
    """Write the features of each split to one safetensors file (``{split}.features``, ``{split}.labels``).

    The header records what the features depend on, as the feature cache's key does: the model's name,
    ``weights_source`` (where its weights came from), ``weights_file_sha256`` (the sha256 of the weight file, where
    one was read), ``state_dict_sha256`` (the hash of the loaded tensors, :func:`~sslzoo.eval.features.weights_sha256`,
    which also identifies weights that never were a file), the eval transform, the data and the pool.
    """
    from ..files import save_safetensors

    int_at_least("batch_size", batch_size)
    loaded = as_loaded(model)
    tensors, counts = {}, {}
    for split in splits:
        x, y = _features(loaded.model, data, split, pool, batch_size, False, device)
        tensors[f"{split}.features"], tensors[f"{split}.labels"] = x, y
        counts[split] = len(y)
    file_sha = (getattr(loaded.model, "sslzoo_cfg", None) or {}).get("sha256")
    meta = {"model": loaded.name, "weights_source": loaded.weights,
            **({"weights_file_sha256": file_sha} if file_sha else {}),
            "state_dict_sha256": weights_sha256(loaded.model), "transform": eval_transform(loaded.model).describe(),
            "data": str(data), "pool": pool, "splits": ",".join(splits)}
    save_safetensors(tensors, output, metadata=meta)
    return {**meta, "output": str(output), "counts": counts}
