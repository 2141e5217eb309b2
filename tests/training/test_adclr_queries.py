"""ADCLR query crops: the view's outputs are untouched by the queries, the queries see the view, no new parameters."""

from __future__ import annotations

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.frameworks import adclr as aq


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_vit(*, no_embed_class: bool = False, init_values: float | None = None, qk_norm: bool = False,
             dynamic_img_size: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=2,
                            num_classes=0, no_embed_class=no_embed_class, init_values=init_values, qk_norm=qk_norm,
                            dynamic_img_size=dynamic_img_size)
    with torch.no_grad():
        vit.pos_embed.normal_(std=0.3)  # a position embedding that matters
    return vit.eval()


def _inputs(batch: int, n_query: int, size: int, seed: int):
    g = _gen(seed)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, n_query, 3, size, size, generator=g)


VARIANTS = [dict(), dict(no_embed_class=True), dict(init_values=0.1, qk_norm=True)]


@settings(max_examples=8, deadline=None)
@given(variant=st.sampled_from(VARIANTS), n_query=st.integers(1, 3), size=st.sampled_from([8, 16, 32]),
       seed=st.integers(0, 2**16))
def test_view_outputs_are_unchanged_by_the_queries(variant, n_query, size, seed):
    vit = make_vit(**variant)
    x, queries = _inputs(2, n_query, size, seed)
    with torch.no_grad():
        view, query = aq.forward_tokens_with_queries(vit, x, queries)
        plain = vit.forward_features(x)
        cls, query_again = aq.forward_with_queries(vit, x, queries)
    torch.testing.assert_close(view, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(cls, plain[:, 0], atol=1e-5, rtol=0)
    assert query.shape == (2, n_query * (size // 4) ** 2, 64) and torch.equal(query, query_again)


@pytest.mark.parametrize("variant", VARIANTS, ids=["class-slot", "no-embed-class", "layerscale-qknorm"])
def test_one_way_attention_equals_timm_blocks_under_an_attention_mask(variant):
    vit = make_vit(**variant)
    x, queries = _inputs(2, 2, 16, 1)
    with torch.no_grad():
        view = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        query = aq.embed_crops(vit, queries.flatten(0, 1)).reshape(2, -1, 64)
        n_view, total = view.shape[1], view.shape[1] + query.shape[1]
        allowed = torch.ones(total, total, dtype=torch.bool)
        allowed[:n_view, n_view:] = False  # view rows must not see query columns
        tokens = torch.cat([view, query], dim=1)
        for block in vit.blocks:
            tokens = block(tokens, attn_mask=allowed)
        reference = vit.norm(tokens)[:, n_view:]
        _, ours = aq.forward_tokens_with_queries(vit, x, queries)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_queries_see_the_view_but_the_view_never_sees_the_queries():
    vit = make_vit()
    x, queries = _inputs(2, 2, 16, 2)
    x.requires_grad_(True)
    queries.requires_grad_(True)
    cls, query = aq.forward_with_queries(vit, x, queries)
    (grad_q,) = torch.autograd.grad(cls.sum(), queries, retain_graph=True, allow_unused=True)
    assert grad_q is None or bool((grad_q == 0).all())
    (grad_x,) = torch.autograd.grad(query.sum(), x)
    assert grad_x.abs().max() > 0
    with torch.no_grad():
        other_view = aq.forward_with_queries(vit, x + 1.0, queries)[1]
        other_queries = aq.forward_with_queries(vit, x, queries.flip(1))[1]
    assert (other_view - query).abs().max() > 1e-3
    assert (other_queries - query).abs().max() > 1e-3


def test_no_parameter_is_added_and_every_gradient_lands_on_the_vit():
    vit = make_vit().train()
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    x, queries = _inputs(2, 2, 16, 3)
    cls, query = aq.forward_with_queries(vit, x, queries)
    (cls.sum() + query.sum() + aq.encode_queries_standalone(vit, queries).sum()).backward()
    after = vit.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.grad is not None for n, p in vit.named_parameters() if n not in {"head.weight", "head.bias"})


@pytest.mark.parametrize("size", [32, 16], ids=["native-size", "resampled-pos-embed"])
def test_standalone_queries_are_timms_own_forward_of_each_crop(size):
    """At the model's size the plain forward; at another size timm's dynamic-size forward (pos-embed resampled)."""
    vit = make_vit()
    dynamic = make_vit(dynamic_img_size=True)
    dynamic.load_state_dict(vit.state_dict())
    _, queries = _inputs(2, 3, size, 4)
    with torch.no_grad():
        ours = aq.encode_queries_standalone(vit, queries)
        reference = dynamic.forward_features(queries.flatten(0, 1))[:, 1:].reshape(2, -1, 64)
        if size == 32:
            torch.testing.assert_close(reference, vit.forward_features(queries.flatten(0, 1))[:, 1:].reshape(2, -1, 64))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_query_crops_must_fit_the_patch_grid():
    with pytest.raises(aq.ViewConfigError, match="multiple of the ViT's patch size"):
        aq.encode_queries_standalone(make_vit(), torch.zeros(1, 1, 3, 10, 10))


def test_the_one_way_mask_on_the_joint_sequence_is_the_two_call_attention():
    """one_way_mask as SDPA's attn_mask over [view; queries] reproduces every block of the joint pass."""
    from torch.nn import functional as F

    vit = make_vit()
    x, queries = _inputs(2, 2, 16, 11)
    with torch.no_grad():
        view, query = aq.forward_tokens_with_queries(vit, x, queries)
        tokens = torch.cat([aq.embed_tokens(vit, x),
                            vit.norm_pre(aq.embed_crops(vit, queries.flatten(0, 1))).reshape(2, -1, 64)], dim=1)
        n_view = view.shape[1]
        mask = aq.one_way_mask(n_view, tokens.shape[1] - n_view)
        for block in vit.blocks:
            h = block.norm1(tokens)
            qkv = block.attn.qkv(h).reshape(2, tokens.shape[1], 3, 2, 32).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(*qkv.unbind(0), attn_mask=mask)
            tokens = tokens + block.attn.proj(out.transpose(1, 2).reshape(2, tokens.shape[1], 64))
            tokens = tokens + block.mlp(block.norm2(tokens))
        tokens = vit.norm(tokens)
    torch.testing.assert_close(tokens[:, :n_view], view, atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens[:, n_view:], query, atol=1e-5, rtol=0)
    # without the mask the view tokens would see the queries
    assert not aq.one_way_mask(3, 2)[:3, 3:].any() and aq.one_way_mask(3, 2)[3:].all()
