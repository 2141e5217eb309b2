import pytest
import torch
from safetensors.torch import save_file

import sslzoo
from sslzoo.errors import CheckpointFormatError
from sslzoo.vit import build_vit, describe_vit, sincos_pos_embed


def test_sincos_table_has_a_zero_class_row_and_distinct_positions():
    pe = sincos_pos_embed((4, 4), 64)
    assert pe.shape == (1, 17, 64)
    assert torch.equal(pe[0, 0], torch.zeros(64))
    rows = pe[0, 1:]
    assert torch.cdist(rows, rows).add(torch.eye(16) * 10).min() > 0.1
    assert rows.abs().max() <= 1.0
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed((2, 2), 66)


@pytest.mark.parametrize("style", ["learn", "learn_no_cls", "sincos"])
@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_describe_reads_back_what_build_made(style, eps):
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, qkv_bias=eps == 1e-6)
    model = build_vit(args, norm_eps=eps, pos_embed=style)
    described, got_eps, got_style = describe_vit(model)
    assert (got_eps, got_style) == (eps, style)
    rebuilt = build_vit(described, norm_eps=got_eps, pos_embed=got_style)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_wrong_shapes_are_named(tmp_path):
    small = sslzoo.create_model("dino_vit_tiny_patch4_32")
    save_file(small.state_dict(), tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointFormatError, match="blocks.0.attn.qkv.weight"):
        sslzoo.create_model("dino_vit_small_patch4_32", pretrained_file=tmp_path / "tiny.safetensors")


def test_any_timm_vit_name_and_a_file_for_it(tmp_path):
    model = sslzoo.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4)
    assert model.num_classes == 0 and model(torch.randn(1, 3, 32, 32)).shape == (1, 192)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    again = sslzoo.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4,
                                pretrained_file=tmp_path / "w.safetensors")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(again.eval()(x), model.eval()(x))
