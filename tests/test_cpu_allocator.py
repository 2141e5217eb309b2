"""sslzoo.cpu_allocator: freed activations stay in the process, so the next step does not page-fault them in."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sslzoo import cpu_allocator

# a step's pattern: allocate a large buffer, write every page, free it; count the page faults of the repeats (torch's
# CPU allocator, as in training: numpy asks for huge pages, which hides the faults)
_FAULTS = textwrap.dedent("""
    import resource, sys
    import torch
    from sslzoo import cpu_allocator
    if sys.argv[1] == "retain":
        assert cpu_allocator.retain_freed_memory()
    for _ in range(5):  # the heap settles (the first rounds may still grow it)
        for size in (8 << 20, 100 << 20):
            torch.empty(size // 4).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        for size in (8 << 20, 100 << 20):
            torch.empty(size // 4).fill_(1.0)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(cpu_allocator.glibc() is None, reason="the thresholds are glibc's")
def test_retained_memory_is_not_faulted_in_again():
    # 10 x 108 MB of fresh pages is about 270,000 faults with glibc's defaults (each 100 MB block is mmapped anew)
    system, retained = faults("system"), faults("retain")
    assert system > 100_000
    # retained: 0 in most runs; now and then the heap still grows once for a 100 MB block (25,600 faults)
    assert retained < system / 5, (system, retained)


def test_another_c_library_is_left_alone(monkeypatch):
    monkeypatch.setattr(cpu_allocator, "glibc", lambda: None)
    assert cpu_allocator.retain_freed_memory() is False
