"""The views' device-side steps on fake CUDA: the photometric pipeline, APS's patch subsets, PatchMix's mixing and
targets, ContrastiveCrop's boxes (drawn in memory and refreshed from heat maps), ADCLR's query crops."""

from __future__ import annotations

import torch

from training.views.aps import sample_pairs
from training.views.contrastive_crop import BoxBank, center_suppressed_boxes, heatmap_boxes
from training.views.crops import ViewGeometry
from training.views.patchmix import mix_targets, patch_mix
from training.views.pipeline import ViewPipeline, ViewPipelineConfig
from training.views.sample_draws import SampleDraws, sample_keys
from training.data.memory import ImageSet

from .fake_cuda import CUDA, assert_module_on_cuda, assert_on_cuda, fake_cuda
from .tiny_methods import BATCH, IMAGES, tiny_method


def test_photometric_steps_and_normalisation_stay_on_the_device() -> None:
    every_step = ViewPipelineConfig(size=32, jitter_p=1.0, gray_p=1.0, blur_p=1.0, solarize_p=1.0)
    with fake_cuda():
        crops = torch.rand(BATCH, 3, 32, 32, device=CUDA)
        draws = SampleDraws(sample_keys(0, 0, torch.arange(BATCH, device=CUDA), 2))
        views, flipped = ViewPipeline(every_step).augment(crops, draws)
        assert_on_cuda([views, flipped])
        # a torch.Generator on the CPU (the views' other random source): its draws are moved to the device
        assert_on_cuda(ViewPipeline(every_step).photometric(crops, torch.Generator().manual_seed(0)))


def test_aps_subsets_and_patchmix_mixing_on_the_device() -> None:
    with fake_cuda():
        boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * BATCH, device=CUDA)
        geometry = ViewGeometry(boxes=boxes, flipped=torch.zeros(BATCH, dtype=torch.bool, device=CUDA))
        draws = SampleDraws(sample_keys(0, 0, torch.arange(BATCH, device=CUDA), 2))
        assert_on_cuda(sample_pairs(geometry, geometry, 4, generator=draws))
        images = torch.rand(BATCH, 3, 32, 32, device=CUDA)
        assert_on_cuda(patch_mix(images, 2, 8, torch.Generator().manual_seed(0)))
        assert_on_cuda(mix_targets(BATCH, 2, rank=1, world_size=2, smoothing=0.1, device=CUDA))


def test_contrastive_crop_boxes_on_the_device() -> None:
    bank = BoxBank(IMAGES)
    with fake_cuda():
        indices = torch.arange(BATCH, device=CUDA)
        assert_on_cuda(bank[indices])  # the bank stays in CPU shared memory; its boxes come to the indices' device
        boxes = heatmap_boxes(torch.rand(BATCH, 4, 4, device=CUDA), threshold=0.4, out_size=32)
        assert_on_cuda(boxes)
        draws = SampleDraws(sample_keys(0, 0, indices, 1))
        assert_on_cuda(center_suppressed_boxes(boxes, 32, 32, generator=draws))


def test_contrastive_crop_refresh_runs_on_the_device() -> None:
    method = tiny_method("ccrop", "arch_kwargs.depth=1")
    images = ImageSet(torch.randint(0, 256, (IMAGES, 3, 32, 32), dtype=torch.uint8), torch.zeros(IMAGES).long())
    with fake_cuda():
        method.to(CUDA)
        calls = []
        update = method.crops.bank.update
        method.crops.bank.update = lambda idx, boxes: calls.append(boxes)  # fake boxes have no values to store
        method.end_of_epoch(0, images, CUDA)
        method.crops.bank.update = update
        assert len(calls) == 1 and calls[0].device.type == "cuda" and tuple(calls[0].shape) == (IMAGES, 4)
        assert_module_on_cuda(method)

