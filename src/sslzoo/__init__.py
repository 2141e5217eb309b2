"""sslzoo: self-supervised Vision Transformers (APS, PatchMix, ContrastiveCrop, ADCLR, MoCo v3, DINO) by name."""

from .attention import attention_figure, attention_maps
from .errors import SslzooError
from .eval.features import extract_features
from .eval.knn import knn_classify
from .eval.linear import linear_probe
from .hub import push_to_hub, save_pretrained
from .models import create_model
from .registry import list_models, model_info

__version__ = "0.1.0"

__all__ = [
    "SslzooError",
    "attention_figure",
    "attention_maps",
    "create_model",
    "extract_features",
    "knn_classify",
    "linear_probe",
    "list_models",
    "model_info",
    "push_to_hub",
    "save_pretrained",
]
