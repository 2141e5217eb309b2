"""The registry's record types: sizes, resolutions, methods, weights, architectures and resolved names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

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

    ``convert_from`` names the upstream layout (:mod:`sslzoo.weights.convert`) of a file that is not in sslzoo's format,
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
        return bool(self.name.partition(".")[2])
