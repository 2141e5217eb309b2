"""One training step of every method on fake CUDA: views finished on the device, forward, heads, losses, the graph a
backward walks, the EMA update and the loss state (DINO's and ADCLR's centres)."""

from __future__ import annotations

import pytest
import torch

from training.methods import StepContext
from training.views.sample_draws import PHOTOMETRIC, SampleDraws, sample_keys

from .fake_cuda import CUDA, assert_backward_reaches, assert_module_on_cuda, assert_on_cuda, fake_cuda
from .tiny_methods import BATCH, FAKE_STEP, METHOD_NAMES, crop_batch, tiny_method


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_one_step_stays_on_the_device(name: str) -> None:
    method = tiny_method(name, *FAKE_STEP)
    images = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    indices = torch.arange(BATCH)
    with fake_cuda():
        method.to(CUDA)
        assert_module_on_cuda(method)
        batch = crop_batch(method, images, indices, CUDA)
        assert_on_cuda(batch.crops, "crops")
        assert_on_cuda(batch.geometry, "geometry")
        draws = SampleDraws(sample_keys(0, 1, batch.indices, PHOTOMETRIC))
        with torch.no_grad():
            inputs = method.finish_views(batch.crops, batch.geometry, draws, 1)
        assert_on_cuda(inputs, "inputs")
        # a CUDA generator needs a driver; the library moves a CPU generator's draws to the device
        ctx = StepContext(epoch=1, generator=torch.Generator().manual_seed(0))
        base = method.ema_base()
        if base is not None and not method.ema_after_step:
            method.update_ema(base)
        with method.pooled_updates():
            terms = method(inputs, method.substeps - 1, ctx)
        assert_on_cuda(terms, "terms")
        assert_backward_reaches(terms["loss"], method)
        method.after_backward(0)
        if base is not None and method.ema_after_step:
            method.update_ema(base)
        assert_module_on_cuda(method)
