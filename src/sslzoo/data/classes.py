"""A dataset an accuracy can be measured on: two classes or more with training images, and no test class without.

kNN, the linear probe and fine-tuning all ask it before any work: with one class every prediction is right and the
accuracy a meaningless 100 %; a test class that train never shows can only be missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .decode import DatasetFormatError


class ClassesError(DatasetFormatError):
    """A dataset whose classes cannot give a meaningful accuracy (one class, or test classes absent from train)."""


def _label_set(labels: Iterable[int]) -> set[int]:
    return set(labels.tolist() if hasattr(labels, "tolist") else labels)  # a tensor's labels in one call


def _names(labels: Iterable[int], classes: Sequence[str]) -> list[str]:
    return [str(classes[i]) if 0 <= i < len(classes) else str(i) for i in sorted(labels)]


def check_classes(train_labels: Iterable[int], test_labels: Iterable[int], classes: Sequence[str], data: object) -> None:
    """Raise :class:`ClassesError` unless train has two classes or more and every test class has training images."""
    in_train = _label_set(train_labels)
    if len(in_train) < 2:
        raise ClassesError(
            f"{data} has {len(in_train)} class with training images ({', '.join(_names(in_train, classes)) or 'none'}):"
            " an accuracy needs at least two classes (one folder per class under train/ and test/)."
        )
    missing = _label_set(test_labels) - in_train
    if missing:
        raise ClassesError(f"{data}: the test classes {', '.join(_names(missing, classes))} have no training images,"
                           " so they can never be predicted; give every test class training images.")
