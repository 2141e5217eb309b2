import pytest
import timm
import torch
from PIL import Image

import sslzoo
from sslzoo import cli
from sslzoo.attention import AttentionError, attention_maps, render_attention

pytestmark = pytest.mark.usefixtures("isolated_hub")


def _vit(**kw):
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, num_classes=0)
    args.update(kw)
    return timm.create_model("vit_tiny_patch16_224", **args)


def _reference_attention(model, images, block):
    """The attention matrix timm's own unfused path computes, caught where it enters attn_drop."""
    attn = model.blocks[block].attn
    attn.fused_attn = False
    seen = []
    handle = attn.attn_drop.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        model.eval().forward_features(images)
    handle.remove()
    attn.fused_attn = True
    return seen[0]


@pytest.mark.parametrize("block", [-1, 0])
@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_maps_equal_timms_own_attention_matrix(block, reg_tokens):
    model = _vit(reg_tokens=reg_tokens, qk_norm=True)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps = attention_maps(model, images, block=block)
    assert maps.shape == (2, 3, 4, 4)
    full = _reference_attention(model, images, block)
    prefix = 1 + reg_tokens
    expected = full[:, :, 0, prefix:].reshape(2, 3, 4, 4)
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-5)
    sums = maps.sum(dim=(-2, -1))
    assert bool(((sums > 0) & (sums <= 1 + 1e-6)).all())


def test_maps_follow_the_input_and_restore_training_mode():
    model = _vit().train()
    a = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    b = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ma, mb = attention_maps(model, a), attention_maps(model, b)
    assert model.training
    assert not torch.allclose(ma, mb)
    torch.testing.assert_close(attention_maps(model, torch.cat([a, b])), torch.cat([ma, mb]), atol=1e-6, rtol=1e-5)


def test_bad_block_and_models_without_class_token_are_refused():
    with pytest.raises(AttentionError, match="3 blocks"):
        attention_maps(_vit(), torch.zeros(1, 3, 32, 32), block=5)
    with pytest.raises(AttentionError, match="class token"):
        attention_maps(_vit(class_token=False, global_pool="avg"), torch.zeros(1, 3, 32, 32))


def test_render_puts_the_image_first_and_one_panel_per_head():
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    maps = torch.rand(3, 4, 4)
    picture = render_attention(image, maps, scale=2, gap=2)
    assert picture.size == (2 * (4 * 34 - 2), 64)
    pixels = torch.from_numpy(__import__("numpy").array(picture))
    assert torch.equal(pixels[::2, :64:2].permute(2, 0, 1), image)  # the first panel is the image itself


def test_cli_writes_a_png_with_one_row_per_image(tmp_path, capsys):
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy()).save(p)
        paths += ["--image", str(p)]
    out = tmp_path / "att" / "maps.png"
    code = cli.main(["attention", "--model", "dino_vit_micro_patch8_32", "--random-init", *paths, "--output", str(out),
                     "--scale", "1"])
    assert code == 0
    picture = Image.open(out)
    heads = sslzoo.create_model("dino_vit_micro_patch8_32").blocks[-1].attn.num_heads
    assert picture.size == ((heads + 1) * 34 - 2, 2 * 32 + 4)
    assert "CLS attention" in capsys.readouterr().out


def test_cli_unreadable_image_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    code = cli.main(["attention", "--model", "dino_vit_micro_patch8_32", "--random-init", "--image", str(bad),
                     "--output", str(tmp_path / "x.png")])
    assert code != 0
    assert "could not read image" in capsys.readouterr().err
