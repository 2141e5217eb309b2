"""torch.hub entry points for sslzoo: ``torch.hub.load("<repo>", "aps_vit_t", source="local", pretrained=False)``."""

import os
import sys

# torch.hub imports this file from a bare checkout, where the src/ layout is not on the path.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

dependencies = ["torch", "torchvision", "timm", "safetensors", "huggingface_hub", "yaml"]

from sslzoo.torch_hub import *  # noqa: E402,F401,F403
