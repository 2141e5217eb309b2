"""The architectures: the methods' official ViT details crossed with the papers' sizes and resolutions, and aliases."""

from __future__ import annotations

from ..preprocessing import CIFAR10_MEAN, CIFAR10_STD, CIFAR_CROP_PCT, IMAGENET_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD
from .schema import Architecture, Method, Resolution, Size

SIZES: dict[str, Size] = {
    s.name: s
    for s in (
        Size("tiny", "t", embed_dim=192, depth=12, num_heads=3),
        Size("small", "s", embed_dim=384, depth=12, num_heads=6),
        Size("base", "b", embed_dim=768, depth=12, num_heads=12),
    )
}

RESOLUTIONS: tuple[Resolution, ...] = (
    Resolution(patch_size=2, img_size=32, crop_pct=CIFAR_CROP_PCT, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    Resolution(patch_size=4, img_size=32, crop_pct=CIFAR_CROP_PCT, mean=CIFAR10_MEAN, std=CIFAR10_STD),
    Resolution(patch_size=16, img_size=224, crop_pct=IMAGENET_CROP_PCT, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    Resolution(patch_size=8, img_size=224, crop_pct=IMAGENET_CROP_PCT, mean=IMAGENET_MEAN, std=IMAGENET_STD),  # DINO /8
)

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="aps",
            title="Asymmetric Patch Sampling for Contrastive Learning",
            paper="Shen, Chen, Wang, Kuang, Liu, Wang. Pattern Recognition 2025",
            arxiv="2306.02854",
            code="https://github.com/visresearch/aps",
            framework="mocov3",
            qkv_bias=False,
            norm_eps=1e-5,
            pos_embed="learn_no_cls",
            small_heads=6,
            release="https://huggingface.co/visresearch/aps",
            notes="Custom ViT from timm 0.6 Blocks: no qkv bias, LayerNorm eps 1e-5, no position for CLS.",
        ),
        Method(
            name="patchmix",
            title="Inter-Instance Similarity Modeling for Contrastive Learning (PatchMix)",
            paper="Shen, Liu, Tang, Qu, Wang. arXiv 2023",
            arxiv="2306.12243",
            code="https://github.com/visresearch/patchmix",
            framework="mocov3",
            qkv_bias=True,
            norm_eps=1e-6,
            pos_embed="learn",
            small_heads=12,
            release="https://huggingface.co/visresearch/PatchMix",
            notes="timm ViT with MoCo v3 head count (ViT-S has 12 heads), learned position embedding.",
        ),
        Method(
            name="ccrop",
            title="Crafting Better Contrastive Views for Siamese Representation Learning (ContrastiveCrop)",
            paper="Peng, Wang, Zhu, You. CVPR 2022",
            arxiv="2202.03278",
            code="https://github.com/xyupeng/ContrastiveCrop",
            framework="mocov3",
            qkv_bias=True,
            norm_eps=1e-6,
            pos_embed="sincos",
            small_heads=12,
            notes="The authors used ResNets only; sslzoo runs ContrastiveCrop on MoCo v3 and its ViT.",
        ),
        Method(
            name="adclr",
            title="Patch-Level Contrasting without Patch Correspondence (ADCLR)",
            paper="Zhang, Zhu, Zhao, Yan. ICLR 2023",
            arxiv="2306.13337",
            code="https://github.com/Sherrylone/PQCL",
            framework="dino",
            qkv_bias=True,
            norm_eps=1e-6,
            pos_embed="sincos",
            small_heads=6,
            notes="DINO/iBOT ViT with a fixed 2-D sin-cos position embedding (zero CLS row).",
        ),
        Method(
            name="mocov3",
            title="An Empirical Study of Training Self-Supervised Vision Transformers (MoCo v3)",
            paper="Chen, Xie, He. ICCV 2021",
            arxiv="2104.02057",
            code="https://github.com/facebookresearch/moco-v3",
            framework="mocov3",
            qkv_bias=True,
            norm_eps=1e-6,
            pos_embed="sincos",
            small_heads=12,
            notes="MoCo v3 ViT: fixed 2-D sin-cos position embedding, 12 heads for ViT-S.",
        ),
        Method(
            name="dino",
            title="Emerging Properties in Self-Supervised Vision Transformers (DINO)",
            paper="Caron, Touvron, Misra, Jegou, Mairal, Bojanowski, Joulin. ICCV 2021",
            arxiv="2104.14294",
            code="https://github.com/facebookresearch/dino",
            framework="dino",
            qkv_bias=True,
            norm_eps=1e-6,
            pos_embed="learn",
            small_heads=6,
        ),
    )
}

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(method, size, resolution)
        for method in METHODS.values()
        for size in SIZES.values()
        for resolution in RESOLUTIONS
    )
}

# The zoo's CPU-trained models (issue 5): a 128-wide, 4-block ViT at patch 8 (16 tokens and a CLS at 32 px), small
# enough for a 2-core CPU to pre-train with every method at one budget. Registered for every method with that
# method's ViT details, but only at this resolution: it is not one of the papers' sizes.
MICRO = Size("micro", "m", embed_dim=128, depth=4, num_heads=4)
MICRO_RESOLUTION = Resolution(patch_size=8, img_size=32, crop_pct=CIFAR_CROP_PCT, mean=CIFAR10_MEAN, std=CIFAR10_STD)
ARCHITECTURES.update({a.name: a for a in (Architecture(m, MICRO, MICRO_RESOLUTION) for m in METHODS.values())})

# Short aliases name the papers' CIFAR architecture (patch 2 at 32 px), the setting every method shares here.
ALIASES: dict[str, str] = {
    f"{method}_vit_{size.short}": f"{method}_vit_{size.name}_patch2_32" for method in METHODS for size in SIZES.values()
}


# A ViT with no method's particulars (timm's defaults), for architectures named without a method.
PLAIN_VIT = Method(name="vit", title="Vision Transformer", paper="Dosovitskiy et al. ICLR 2021", arxiv="2010.11929",
                   code="https://github.com/huggingface/pytorch-image-models", framework="dino", qkv_bias=True,
                   norm_eps=1e-6, pos_embed="learn", small_heads=6)
