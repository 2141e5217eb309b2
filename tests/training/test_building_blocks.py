"""The public building blocks (training/README "Building blocks") run as their docstrings show, on plain tensors.

The examples import ``sslzoo.training``, the name a ``pip install`` gives the package; here it maps to the
repository's ``training/`` folder.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

BLOCKS = {  # module -> the names whose docstrings hold a runnable example
    "views.aps": ["sample_pairs"],
    "views.patchmix": ["patch_mix"],
    "views.contrastive_crop": ["BoxBank"],
    "views.adclr_queries": ["query_crops"],
    "frameworks.adclr": ["one_way_mask"],
    "objectives.infonce": ["info_nce"],
    "objectives.dino": ["dino_loss"],
}


@pytest.mark.parametrize("module", sorted(BLOCKS))
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"sslzoo.training.{module}")
    tests = {t.name.rsplit(".", 1)[-1]: t for t in doctest.DocTestFinder().find(mod) if t.examples}
    assert set(BLOCKS[module]) <= set(tests), f"{module}: no example in {set(BLOCKS[module]) - set(tests)}"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests.values():
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 3, runner.summarize()
