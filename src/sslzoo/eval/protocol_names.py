"""The names and settings of the evaluation protocols, without the code that runs them.

The command line builds its choices and defaults from these before it imports torch, faiss or timm.
"""

from __future__ import annotations

KNN_PRESETS: dict[str, dict] = {
    "knn:dino": dict(k=(10, 20, 100, 200), temperature=0.07),
    "knn:instdisc": dict(k=(200,), temperature=0.1),
}
HEADLINE_K = {"knn:dino": 20, "knn:instdisc": 200}
SAMPLE = "sample"  # the CIFAR-10 sample shipped inside the package, as a --data value
POOLS = ("cls", "avg", "cls+avg", "last4")
# the dense protocols (sslzoo.eval.dense); --protocol takes the part after "dense:"
DENSE_PROTOCOLS = ("dense:linear", "dense:nn")
DENSE_DATA = "cifar10-mosaic"  # the built-in dense benchmark (sslzoo.data.mosaic), the default --data of `sslzoo dense`
