"""Fake CUDA for the device tests: tensors on ``cuda`` without a GPU, which fail on any mix with CPU tensors.

Under ``torch._subclasses.fake_tensor.FakeTensorMode`` a tensor on ``device="cuda"`` carries shape, dtype and device
but no data, and an operation that mixes it with a CPU tensor (other than a 0-dim one, which CUDA accepts too)
raises ``FakeTensorDeviceMismatchError``, as a real GPU would. Models are built on CPU (their initialisers read
values) and then moved with ``.to("cuda")`` inside the mode.

Values do not exist, so what code asks of them (``bool(t)``, ``t.item()``, ``t.nonzero()``) has no answer.
:class:`DataDependentAnswers` answers it instead, always the same way: every condition true, every mask fully
selected. Every branch that does work runs once, with the largest shapes it can take; nothing that follows from the
values is checked, only devices, dtypes and shapes.

Two things cannot run here: ``torch.Generator(device="cuda")`` needs a CUDA driver (the tests hand a CPU generator,
whose draws the library moves to the device), and autograd's backward on CUDA tensors needs a CUDA context
(pytorch/pytorch#92627): :func:`assert_backward_reaches` checks the graph a backward would walk instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from training.views import sample_draws

CUDA = torch.device("cuda", 0)


class DataDependentAnswers(TorchDispatchMode):
    """Answers the questions about values that fake tensors cannot: scalars are 1 (True), ``nonzero`` selects all."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            return True if args[0].dtype == torch.bool else (1.0 if args[0].dtype.is_floating_point else 1)
        if func is torch.ops.aten.nonzero.default:
            x = args[0]
            return torch.zeros(x.numel(), x.dim(), dtype=torch.long, device=x.device)
        return func(*args, **kwargs)


@contextmanager
def fake_cuda() -> Iterator[FakeTensorMode]:
    """A fake-tensor mode in which ``device="cuda"`` works without a GPU (real CPU tensors are taken in as fakes)."""
    sample_draws._salt.cache_clear()  # cached tensors must belong to the mode that uses them
    sample_draws._head.cache_clear()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    try:
        with mode, DataDependentAnswers():
            yield mode
    finally:
        sample_draws._salt.cache_clear()
        sample_draws._head.cache_clear()


def on_cuda(tensor: Tensor) -> bool:
    return isinstance(tensor, FakeTensor) and tensor.device.type == "cuda"


def assert_on_cuda(tree, where: str = "") -> None:
    """Every tensor in ``tree`` (a tensor, or nested dicts, lists, tuples and dataclasses) is a fake CUDA tensor."""
    if isinstance(tree, Tensor):
        assert on_cuda(tree), f"{where or 'tensor'} is on {tree.device}, not cuda"
    elif isinstance(tree, dict):
        for key, value in tree.items():
            assert_on_cuda(value, f"{where}[{key!r}]")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            assert_on_cuda(value, f"{where}[{i}]")
    elif hasattr(tree, "__dataclass_fields__"):
        for name in tree.__dataclass_fields__:
            assert_on_cuda(getattr(tree, name), f"{where}.{name}")


def assert_module_on_cuda(module: nn.Module) -> None:
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        assert on_cuda(tensor), f"{type(module).__name__}.{name} is on {tensor.device}, not cuda"


def assert_backward_reaches(loss: Tensor, module: nn.Module) -> None:
    """The backward graph of ``loss`` is on CUDA and ends in every trainable parameter of ``module``.

    What ``loss.backward()`` would do: each node's inputs are the outputs of the forward operations (already run on
    fake CUDA), and the leaves it accumulates into are the parameters; a parameter it does not reach would get no
    gradient (a detached path), one on another device would fail there.
    """
    assert on_cuda(loss) and loss.requires_grad, f"the loss ({loss.device}) has no CUDA graph"
    reached, seen, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            assert on_cuda(variable), f"a gradient would accumulate into a {variable.device} tensor"
            reached.add(id(variable))
        for meta in getattr(node, "_input_metadata", ()):
            assert meta.device.type == "cuda", f"{node.name()} would receive a gradient on {meta.device}"
        stack.extend(next_node for next_node, _ in node.next_functions)
    missing = [name for name, p in module.named_parameters() if p.requires_grad and id(p) not in reached]
    assert not missing, f"no gradient would reach {missing}"

