"""sslzoo: self-supervised Vision Transformers (APS, PatchMix, ContrastiveCrop, ADCLR, MoCo v3, DINO) by name."""

from .errors import SslzooError
from .hub import push_to_hub, save_pretrained
from .models import create_model
from .registry import list_models, model_info

__version__ = "0.1.0"

__all__ = [
    "SslzooError",
    "create_model",
    "list_models",
    "model_info",
    "push_to_hub",
    "save_pretrained",
]
