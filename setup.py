"""Only the editable install is customised here; everything else is in pyproject.toml.

``training/`` installs as ``sslzoo.training`` (a second ``package-dir``), so setuptools makes an editable install
with an import finder that Python asks last, after every ``sys.path`` folder. A folder named ``sslzoo`` without an
``__init__.py`` in the current directory (the clone itself, seen from its parent folder) then wins as a namespace
package, and ``sslzoo.create_model`` is missing. Putting ``src/`` on ``sys.path`` as well (a ``.pth`` line) lets the
real package win: a regular package beats a namespace one wherever it sits on the path. The finder still serves
``sslzoo.training``.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.editable_wheel import editable_wheel

SRC = Path(__file__).resolve().parent / "src"


class _SrcOnPath:
    """setuptools' editable strategy plus a ``.pth`` that puts ``src/`` on ``sys.path``."""

    def __init__(self, strategy, name: str) -> None:
        self.strategy, self.name = strategy, name

    def __call__(self, wheel, files, mapping):
        result = self.strategy(wheel, files, mapping)
        wheel.writestr(f"__editable__.{self.name}.src.pth", f"{SRC}\n".encode())
        return result

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self.strategy.__exit__(*exc)


class EditableWheel(editable_wheel):
    # _select_strategy is setuptools' own hook (68 to 80+); were it renamed, the install would still work, only
    # without the src/ line, and tests/test_packaging.py would say so
    def _select_strategy(self, name, tag, build_lib):
        return _SrcOnPath(super()._select_strategy(name, tag, build_lib), name)


setup(cmdclass={"editable_wheel": EditableWheel})
