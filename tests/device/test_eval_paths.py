"""The evaluation paths on fake CUDA: frozen CLS and patch features of a model on the device, the kNN vote on its
features, and a fine-tuning step (mixup, loss, the graph a backward walks).

The linear probe, ``dense:linear`` and ``dense:nn`` run on the CPU by design: they take the features that extraction
returns on the CPU (checked here), so nothing of theirs meets a device tensor.
"""

from __future__ import annotations

import torch

from sslzoo.data.decode import DecodedSplit
from sslzoo.eval.features import extract_features
from sslzoo.eval.finetune.loop import criterion_and_mixup
from sslzoo.eval.finetune.recipes import resolve_recipe
from sslzoo.eval.knn import knn_classify
from sslzoo.eval.patch_features import extract_patch_features

from tests.conftest import make_tiny_vit
from .fake_cuda import CUDA, assert_backward_reaches, assert_on_cuda, fake_cuda


def _split(n: int = 4) -> DecodedSplit:
    return DecodedSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n) % 2, ["a", "b"],
                        "device-test")


def test_features_of_a_model_on_the_device_come_back_on_the_cpu() -> None:
    model, split = make_tiny_vit(depth=1), _split()
    with fake_cuda():
        model.to(CUDA)
        for pool in ("cls", "cls+avg"):
            feats, labels = extract_features(model, split, pool=pool, progress=False)
            assert feats.device.type == "cpu" and feats.shape == (4, 64 * (2 if pool == "cls+avg" else 1))
        grids, _ = extract_patch_features(model, split, progress=False)
        assert grids.device.type == "cpu" and grids.shape == (4, 8, 8, 64)
        # kNN on device features: the search runs on the CPU copies (torch path)
        preds = knn_classify(torch.randn(6, 64, device=CUDA), torch.arange(6) % 2, torch.randn(3, 64, device=CUDA),
                             k=2, num_classes=2, backend="torch")
        assert preds.device.type == "cpu" and preds.shape == (3,)


def test_a_finetuning_step_stays_on_the_device() -> None:
    model = make_tiny_vit(depth=1)
    model.reset_classifier(10)
    model.train()
    criterion, mixup = criterion_and_mixup(resolve_recipe("default"), 10)
    assert mixup is not None  # the default recipe mixes (Mixup/CutMix soft targets made on the labels' device)
    with fake_cuda():
        model.to(CUDA)
        x, y = torch.rand(4, 3, 32, 32, device=CUDA), torch.randint(0, 10, (4,), device=CUDA)
        x, target = mixup(x, y)
        assert_on_cuda([x, target])
        loss = criterion(model(x), target)
        assert_backward_reaches(loss, model)
