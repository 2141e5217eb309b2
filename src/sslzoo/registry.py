"""The model registry: names, aliases, tags and pretrained-weight records.

Everything here is data. A model name is ``{method}_vit_{size}_patch{p}_{img}``, optionally followed by
``.{tag}`` naming one set of weights (timm's convention). Short aliases (``aps_vit_t``) name an architecture
whose default tag (its first) is used when weights are asked for.

The architecture arguments differ between the methods' official models (qkv bias, LayerNorm eps, position
embedding, ViT-S head count); ``METHODS`` records them so that converted official checkpoints load exactly
and the project's own checkpoints match the papers' models.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence, Union

from .errors import UnknownModelError
from .preprocessing import (CIFAR10_MEAN, CIFAR10_STD, CIFAR10_STD_APS, CIFAR_CROP_PCT, IMAGENET_CROP_PCT,  # noqa: F401
                            IMAGENET_MEAN, IMAGENET_STD)

PosEmbed = Literal["learn", "learn_no_cls", "sincos"]



@dataclass(frozen=True)
class Size:
    """A ViT width/depth preset; ``num_heads`` is the common (DeiT/DINO) head count."""

    name: str
    short: str
    embed_dim: int
    depth: int
    num_heads: int


@dataclass(frozen=True)
class Resolution:
    """A patch size and input size, with the eval preprocessing that suits images of that scale."""

    patch_size: int
    img_size: int
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class Method:
    """A pretraining method and the ViT details of its official model."""

    name: str
    title: str
    paper: str
    arxiv: str
    code: str
    framework: Literal["mocov3", "dino"]
    qkv_bias: bool
    norm_eps: float
    pos_embed: PosEmbed
    small_heads: int
    release: str = ""
    notes: str = ""


@dataclass(frozen=True)
class Result:
    """One evaluation figure, always with its protocol; ``source`` says whether sslzoo measured it."""

    dataset: str
    protocol: str
    value: float
    metric: str = "top1"
    source: Literal["measured", "reported"] = "measured"
    notes: str = ""


@dataclass(frozen=True)
class Weights:
    """One set of pretrained weights for an architecture (a timm ``PretrainedCfg``, plus provenance).

    Sources, in resolution order after an explicit ``pretrained_file``: ``hub_dir`` inside a local hub folder
    (``$SSLZOO_HUB``, then the hub folder shipped with the package), then ``hf_hub_id``/``hf_filename`` through
    ``huggingface_hub``, then ``url``.

    ``convert_from`` names the upstream layout (:mod:`sslzoo.convert`) of a file that is not in sslzoo's format,
    such as the authors' own release: it is converted on first load and the result cached; ``sha256`` then pins the
    upstream file. ``hf_filename=None`` with ``convert_from`` means the file name is not known (the user is told how
    to fetch the file and pass it as ``pretrained_file``).
    """

    tag: str
    description: str
    pretrain_data: str
    pretrain_epochs: Optional[int] = None
    filename: str = "model.safetensors"
    hub_dir: Optional[str] = None
    hf_hub_id: Optional[str] = None
    hf_filename: Optional[str] = None
    url: Optional[str] = None
    convert_from: Optional[str] = None
    sha256: Optional[str] = None
    licence: str = "apache-2.0"
    input_size: Optional[tuple[int, int, int]] = None
    interpolation: str = "bicubic"
    crop_pct: Optional[float] = None
    mean: Optional[tuple[float, float, float]] = None
    std: Optional[tuple[float, float, float]] = None
    model_args: dict[str, Any] = field(default_factory=dict)
    results: tuple[Result, ...] = ()
    notes: str = ""


@dataclass(frozen=True)
class Architecture:
    """A registry architecture: one method crossed with one size and resolution."""

    method: Method
    size: Size
    resolution: Resolution

    @property
    def name(self) -> str:
        r = self.resolution
        return f"{self.method.name}_vit_{self.size.name}_patch{r.patch_size}_{r.img_size}"

    @property
    def num_heads(self) -> int:
        # MoCo v3 and PatchMix use 12 heads for ViT-S where DeiT/DINO use 6.
        return self.method.small_heads if self.size.name == "small" else self.size.num_heads

    @property
    def model_args(self) -> dict[str, Any]:
        """JSON-serialisable ``timm.models.VisionTransformer`` arguments (eps and pos-embed style aside)."""
        r = self.resolution
        return dict(
            img_size=r.img_size,
            patch_size=r.patch_size,
            embed_dim=self.size.embed_dim,
            depth=self.size.depth,
            num_heads=self.num_heads,
            mlp_ratio=4.0,
            qkv_bias=self.method.qkv_bias,
            class_token=True,
            global_pool="token",
            no_embed_class=self.method.pos_embed == "learn_no_cls",
        )


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

# The authors' released weights (METHODS.md 1.7-1.8, 2.8-2.9). Their numbers come from the authors' READMEs and are
# marked "reported": sslzoo has not measured them. No sha256 is published for any of these files.
APS_CIFAR_STD = CIFAR10_STD_APS  # the std APS pre-trains with (not the usual CIFAR-10 one)
_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet1k": "ImageNet-1K"}
_SIZE_LABELS = {"tiny": "ViT-T", "small": "ViT-S", "base": "ViT-B"}
_APS_FINETUNE = {  # (dataset, epochs) -> fine-tune top-1 per size [README@d761b9f]
    ("cifar10", 1600): {"tiny": 97.2, "small": 98.1, "base": 98.2},
    ("cifar10", 3200): {"tiny": 97.5, "small": 98.2, "base": 98.3},
    ("cifar100", 1600): {"tiny": 83.4, "small": 84.9, "base": 85.9},
    ("cifar100", 3200): {"tiny": 83.4, "small": 85.3, "base": 86.0},
}
_PATCHMIX = {  # (dataset, size) -> (pre-train epochs, fine-tune, linear, kNN top-1) [README@21ace32]
    ("imagenet1k", "small"): (300, 82.8, 77.4, 73.3),
    ("imagenet1k", "base"): (300, 84.1, 80.2, 76.2),
    ("cifar10", "tiny"): (800, 97.5, 94.4, 92.9),
    ("cifar10", "small"): (800, 98.1, 96.0, 94.6),
    ("cifar10", "base"): (800, 98.3, 96.6, 95.8),
    ("cifar100", "tiny"): (800, 84.9, 74.7, 68.8),
    ("cifar100", "small"): (800, 86.0, 78.7, 75.4),
    ("cifar100", "base"): (800, 86.0, 79.7, 75.7),
}
_REPORTED = "Reported by the authors' README, not measured by sslzoo."


def _aps_release(size: str, data: str, epochs: int) -> Weights:
    dataset = _DATASETS[data]
    return Weights(
        tag=f"authors_{data}_{epochs}ep",
        description=f"the authors' APS pre-training checkpoint, {_SIZE_LABELS[size]}/2 on {dataset}, {epochs} epochs",
        pretrain_data=dataset,
        pretrain_epochs=epochs,
        hf_hub_id="visresearch/aps",
        hf_filename=None,
        convert_from="aps",
        licence="cc-by-nc-4.0",
        mean=CIFAR10_MEAN,
        std=APS_CIFAR_STD,
        crop_pct=1.0,
        results=(
            Result(dataset, "finetune:aps-cifar", _APS_FINETUNE[(data, epochs)][size], source="reported",
                   notes=f"{_REPORTED} Best test top-1 over 100 fine-tuning epochs (METHODS.md 1.6)."),
        ),
        notes="The authors' README links only https://huggingface.co/visresearch/aps/tree/main and names no files, so"
        " sslzoo cannot fetch this one by itself: download the pre-training file and pass it as pretrained_file=."
        " Preprocessing: the CIFAR statistics APS pre-trains with (its fine-tuning uses ImageNet statistics).",
    )


def _patchmix_release(size: str, data: str) -> Weights:
    epochs, finetune, linear, knn = _PATCHMIX[(data, size)]
    imagenet = data == "imagenet1k"
    dataset = _DATASETS[data]
    tiny = " ViT-T was trained without a momentum encoder, so its base encoder is converted." if size == "tiny" else ""
    renamed = " Its fine-tuned file is named ...-84.6.pth in the README." if (data, size) == ("cifar100", "tiny") else ""
    return Weights(
        tag="authors_in1k" if imagenet else f"authors_{data}",
        description=f"the authors' PatchMix pre-training checkpoint, {_SIZE_LABELS[size]}/{16 if imagenet else 2} on"
        f" {dataset}, {epochs} epochs",
        pretrain_data=dataset,
        pretrain_epochs=epochs,
        hf_hub_id="visresearch/PatchMix",
        hf_filename=f"pretrain/{data}/vit-{size}-{epochs}-{knn}.pth",
        convert_from="patchmix",
        licence="cc-by-nc-4.0",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        crop_pct=0.875,  # Resize(int(size / 224 * 256)) then CenterCrop, as in the authors' kNN and linear evaluation
        results=(
            Result(dataset, f"finetune:patchmix-{'in1k' if imagenet else 'cifar'}", finetune, source="reported",
                   notes=f"{_REPORTED} Best epoch of 100 (METHODS.md 2.7).{renamed}"),
            Result(dataset, "linear:patchmix", linear, source="reported",
                   notes=f"{_REPORTED} Linear head on the CLS after the final LayerNorm, best of 100 epochs."),
            Result(dataset, "knn:patchmix", knn, source="reported",
                   notes=f"{_REPORTED} The authors' kNN feature is the CLS token through a randomly initialised"
                   " 1000-d linear head, not the raw CLS, and the README does not say which k (METHODS.md 2.7)."),
        ),
        notes="File path from the authors' README, whose kNN links point at the pre-training checkpoints (the accuracy"
        " in the file name is that kNN figure). The momentum encoder is converted, as the authors evaluate." + tiny,
    )


ZOO_INDEX = Path(__file__).with_name("zoo") / "index.json"


def zoo_entries(index: Path = ZOO_INDEX) -> list[dict[str, Any]]:
    """The entries of the zoo index, in the order it lists them (none when the index is missing)."""
    if not index.is_file():
        return []
    return list(json.loads(index.read_text(encoding="utf-8"))["models"])


def zoo_weights(index: Path = ZOO_INDEX) -> dict[str, tuple[Weights, ...]]:
    """The zoo's own checkpoints, shipped in ``sslzoo/zoo/`` and listed in its ``index.json``.

    ``index.json`` is written by ``scripts/build_zoo.py`` from the training runs and their measurements; every entry
    names its architecture and holds the fields of :class:`Weights` (results as dicts of :class:`Result`), plus
    provenance (``run``) and the regression figures (``regression``) that the registry does not need.
    """
    out: dict[str, list[Weights]] = {}
    for entry in zoo_entries(index):
        fields = {k: v for k, v in entry["weights"].items() if k != "results"}
        for key in ("input_size", "mean", "std"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        results = tuple(Result(**r) for r in entry["weights"].get("results", ()))
        out.setdefault(entry["architecture"], []).append(Weights(**fields, results=results))
    return {arch: tuple(ws) for arch, ws in out.items()}


# Pretrained weights per architecture; the first entry is the default tag. Project-trained weights go first, so
# that aliases such as aps_vit_b resolve to them rather than to the authors' files.
WEIGHTS: dict[str, tuple[Weights, ...]] = {
    **{
        f"aps_vit_{size}_patch2_32": tuple(_aps_release(size, data, epochs) for data, epochs in _APS_FINETUNE)
        for size in ("tiny", "small", "base")
    },
    **{
        f"patchmix_vit_{size}_patch2_32": tuple(_patchmix_release(size, data) for data in ("cifar10", "cifar100"))
        for size in ("tiny", "small", "base")
    },
    **{f"patchmix_vit_{size}_patch16_224": (_patchmix_release(size, "imagenet1k"),) for size in ("small", "base")},
}
for _arch, _zoo in zoo_weights().items():
    WEIGHTS[_arch] = _zoo + WEIGHTS.get(_arch, ())


@dataclass(frozen=True)
class Resolved:
    """A name resolved against the registry: its architecture and, when a tag applies, its weights."""

    name: str
    architecture: Architecture
    weights: Optional[Weights]

    @property
    def full_name(self) -> str:
        return f"{self.architecture.name}.{self.weights.tag}" if self.weights else self.architecture.name

    @property
    def tag_given(self) -> bool:
        """Whether the name spelled out its tag: only then is a file the caller passes held to the tag's pin."""
        return split_tag(self.name)[1] is not None


# A ViT with no method's particulars (timm's defaults), for architectures named without a method.
PLAIN_VIT = Method(name="vit", title="Vision Transformer", paper="Dosovitskiy et al. ICLR 2021", arxiv="2010.11929",
                   code="https://github.com/huggingface/pytorch-image-models", framework="dino", qkv_bias=True,
                   norm_eps=1e-6, pos_embed="learn", small_heads=6)


def vit_args(method: Optional[str], size: Size, *, patch_size: int, img_size: int) -> tuple[dict[str, Any], float,
                                                                                                PosEmbed]:
    """The ``VisionTransformer`` arguments, LayerNorm eps and position embedding of ``method``'s official ViT.

    Any size works, including training-only ones that are not registered; ``method=None`` gives a plain timm ViT.
    This is the rule every architecture of the registry is built by (:attr:`Architecture.model_args`).
    """
    spec = METHODS[method] if method else PLAIN_VIT
    arch = Architecture(spec, size, Resolution(patch_size, img_size, CIFAR_CROP_PCT, CIFAR10_MEAN, CIFAR10_STD))
    return arch.model_args, spec.norm_eps, spec.pos_embed


def split_tag(name: str) -> tuple[str, Optional[str]]:
    """``"aps_vit_tiny_patch2_32.cifar10"`` -> ``("aps_vit_tiny_patch2_32", "cifar10")``."""
    arch, _, tag = name.partition(".")
    return arch, tag or None


def all_names(*, with_tags: bool = True, with_aliases: bool = True) -> list[str]:
    """Every name the registry accepts, for listings and suggestions."""
    names = list(ARCHITECTURES)
    if with_tags:
        names += [f"{arch}.{w.tag}" for arch, ws in WEIGHTS.items() for w in ws]
    if with_aliases:
        names += list(ALIASES)
    return sorted(names)


def suggest(name: str, n: int = 5) -> list[str]:
    """The registry names closest to ``name``."""
    arch, _ = split_tag(name)
    candidates = all_names()
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.6)
    if len(close) < n:
        close += [c for c in difflib.get_close_matches(arch, candidates, n=n, cutoff=0.6) if c not in close]
    return close[:n]


def is_registered(name: str) -> bool:
    arch, _ = split_tag(name)
    return arch in ARCHITECTURES or arch in ALIASES


def resolve(name: str) -> Resolved:
    """Resolve a registry name or alias, with an optional tag.

    Raises:
        UnknownModelError: the name, or its tag, is not registered; the message lists the closest names.
    """
    arch_name, tag = split_tag(name)
    arch_name = ALIASES.get(arch_name, arch_name)
    if arch_name not in ARCHITECTURES:
        close = suggest(name)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model '{name}'.{hint} Run `sslzoo list` (or sslzoo.list_models()) for every name; "
            "any timm ViT name and 'local-dir:PATH' / 'hf-hub:REPO' are accepted too."
        )
    weights = WEIGHTS.get(arch_name, ())
    if tag is None:
        return Resolved(name, ARCHITECTURES[arch_name], weights[0] if weights else None)
    for w in weights:
        if w.tag == tag:
            return Resolved(name, ARCHITECTURES[arch_name], w)
    known = ", ".join(f"{arch_name}.{w.tag}" for w in weights) or "none yet"
    raise UnknownModelError(f"Unknown tag '{tag}' for {arch_name}. Pretrained tags of this architecture: {known}.")


def list_models(
    pattern: Union[str, Sequence[str]] = "*",
    pretrained: bool = False,
    *,
    include_aliases: bool = False,
) -> list[str]:
    """Registry names matching a wildcard pattern (or several), sorted.

    Args:
        pattern: ``fnmatch`` pattern(s), e.g. ``"aps_*"`` or ``"*_patch2_32"``.
        pretrained: list only names with pretrained weights, one entry per tag (``name.tag``).
        include_aliases: also list the short aliases (``aps_vit_t``).
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if pretrained:
        names: Iterable[str] = (f"{arch}.{w.tag}" for arch, ws in WEIGHTS.items() for w in ws)
    else:
        names = list(ARCHITECTURES) + (list(ALIASES) if include_aliases else [])
    return sorted(n for n in set(names) if any(fnmatch.fnmatchcase(n, p) for p in patterns))


def model_info(name: str) -> dict[str, Any]:
    """Everything the registry knows about a name, as a JSON-serialisable dict."""
    r = resolve(name)
    arch = r.architecture
    aliases = sorted(a for a, target in ALIASES.items() if target == arch.name)
    return {
        "name": r.full_name,
        "architecture": arch.name,
        "aliases": aliases,
        "method": asdict(arch.method),
        "size": arch.size.name,
        "model_args": arch.model_args,
        "norm_eps": arch.method.norm_eps,
        "pos_embed": arch.method.pos_embed,
        "tags": [w.tag for w in WEIGHTS.get(arch.name, ())],
        "weights": asdict(r.weights) if r.weights else None,
    }
