"""Build the CIFAR-10 (JPEG q75) sample shipped in ``src/sslzoo/sample/`` from the shared tarball.

The sample keeps the original JPEG bytes of the tarball (no re-encoding), so that it decodes to exactly the images
of the shared copy. The selection is a seeded draw of ``--train-per-class`` images per class from the train split and
``--test-per-class`` from the test split; the zip is written with fixed timestamps and order, so that the same
tarball, counts and seed give a byte-identical archive (its sha256 is recorded in the sample's README).

Usage::

    python scripts/make_embedded_sample.py /work/shared/data/cifar10-jpg.tar.gz src/sslzoo/sample
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

ARCHIVE_NAME = "cifar10_sample.zip"
MANIFEST_NAME = "MANIFEST.sha256"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: the archive must not depend on when it was built


def read_members(tarball: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """All JPEG bytes of the tarball as ``{split: {class: {file name: bytes}}}``."""
    members: dict[str, dict[str, dict[str, bytes]]] = defaultdict(lambda: defaultdict(dict))
    with tarfile.open(tarball, "r:gz") as tar:
        for info in tar:
            parts = Path(info.name).parts  # cifar10-jpg/<split>/<class>/<file>
            if info.isfile() and len(parts) == 4 and parts[3].endswith(".jpg"):
                members[parts[1]][parts[2]][parts[3]] = tar.extractfile(info).read()
    return members


def select(members: dict[str, dict[str, bytes]], per_class: int, rng: np.random.Generator) -> dict[str, bytes]:
    """``per_class`` files of each class (classes and files sorted before the draw), keyed by ``class/file``."""
    chosen = {}
    for cls in sorted(members):
        names = sorted(members[cls])
        for i in sorted(rng.choice(len(names), size=per_class, replace=False)):
            chosen[f"{cls}/{names[i]}"] = members[cls][names[i]]
    return chosen


def write_zip(files: dict[str, bytes], path: Path) -> None:
    """An uncompressed zip (JPEG does not compress further) with fixed timestamps, in sorted order."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])


def npz_size(files: dict[str, bytes]) -> int:
    """Size of the alternative: the decoded uint8 images in a compressed npz."""
    images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in files.values()])
    buf = io.BytesIO()
    np.savez_compressed(buf, images=images)
    return buf.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarball", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    members = read_members(args.tarball)
    rng = np.random.default_rng(args.seed)
    files = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        files.update({f"{split}/{k}": v for k, v in select(members[split], per_class, rng).items()})

    args.out_dir.mkdir(parents=True, exist_ok=True)
    archive = args.out_dir / ARCHIVE_NAME
    write_zip(files, archive)
    manifest = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    (args.out_dir / MANIFEST_NAME).write_text(manifest, encoding="utf-8")

    print(f"{len(files)} images; {ARCHIVE_NAME}: {archive.stat().st_size} bytes "
          f"(decoded uint8 in a compressed npz would be {npz_size(files)} bytes)")
    print(f"sha256 {ARCHIVE_NAME}: {hashlib.sha256(archive.read_bytes()).hexdigest()}")
    print(f"sha256 {MANIFEST_NAME}: {hashlib.sha256(manifest.encode()).hexdigest()}")
    print(f"sha256 tarball: {hashlib.sha256(args.tarball.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
