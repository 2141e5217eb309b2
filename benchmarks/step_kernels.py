"""The kernels a CPU training step could swap, at the zoo's CPU shapes: what issue 16 tried besides the allocator.

    PYTHONPATH=. python benchmarks/step_kernels.py            # about 3 minutes

For the token shapes of the micro ViT/8 (batch 256), ViT-T/4 (64) and ViT-T/2 (32) at 32 px, one ViT block's
memory-bound pieces, forward and backward (ms, the best of ``--reps``; retained allocator, as training runs):

- attention: PyTorch's CPU flash kernel (``scaled_dot_product_attention``, what timm calls) against the math
  backend and timm's unfused ``q @ k.T -> softmax -> @ v``;
- the MLP activation: ATen's exact GELU against the same GELU compiled by ``torch.compile`` (inductor's C++),
  and fused with the fc1 bias as inductor would fuse it;
- for scale, the fc1 matmul of the same tokens (the work the activation follows).

Ratios are to the first column of each group, measured in the same run. Prints a table and writes
benchmarks/results/step_kernels.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sslzoo.cpu_allocator import retain_freed_memory

RESULTS = Path(__file__).with_name("results") / "step_kernels.json"
# (batch, tokens, width, heads) of the three CPU architectures of benchmarks/train_step.py
SHAPES = {"vit_micro_patch8_32": (256, 17, 128, 4), "vit_tiny_patch4_32": (64, 65, 192, 3),
          "vit_tiny_patch2_32": (32, 257, 192, 3)}


def best_ms(fn, reps: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def attention_variants(batch: int, tokens: int, width: int, heads: int) -> dict:
    qkv = torch.randn(batch, tokens, 3, heads, width // heads, requires_grad=True)
    scale = (width // heads) ** -0.5

    def run(kind: str):
        def step():
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            if kind == "timm_unfused":
                out = ((q * scale) @ k.transpose(-2, -1)).softmax(-1) @ v
            else:
                backend = SDPBackend.FLASH_ATTENTION if kind == "flash" else SDPBackend.MATH
                with sdpa_kernel(backend):
                    out = F.scaled_dot_product_attention(q, k, v)
            out.transpose(1, 2).reshape(batch, tokens, width).sum().backward()
        return step

    return {kind: run(kind) for kind in ("flash", "math", "timm_unfused")}


def activation_variants(batch: int, tokens: int, width: int) -> dict:
    hidden = 4 * width
    x = torch.randn(batch * tokens, hidden, requires_grad=True)
    bias = torch.randn(hidden, requires_grad=True)
    tokens_in, fc1 = torch.randn(batch * tokens, width), torch.randn(hidden, width)
    compiled_gelu = torch.compile(lambda t: F.gelu(t))
    compiled_bias_gelu = torch.compile(lambda t, b: F.gelu(t + b))
    return {
        "aten_gelu": lambda: F.gelu(x + bias).sum().backward(),
        "compiled_gelu": lambda: compiled_gelu(x + bias).sum().backward(),
        "compiled_bias_gelu": lambda: compiled_bias_gelu(x, bias).sum().backward(),
        "fc1_matmul_forward": lambda: tokens_in @ fc1.t(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    retain_freed_memory()
    rows = []
    for arch, (batch, tokens, width, heads) in SHAPES.items():
        for group, variants in (("attention fwd+bwd", attention_variants(batch, tokens, width, heads)),
                                ("bias+GELU fwd+bwd", activation_variants(batch, tokens, width))):
            times = {name: best_ms(fn, args.reps) for name, fn in variants.items()}
            first = next(iter(times.values()))
            for name, ms in times.items():
                rows.append({"arch": arch, "group": group, "variant": name, "ms": ms, "ratio_to_first": ms / first})
    print(f"{'arch':20s} {'group':18s} {'variant':20s} {'ms':>8s} {'x first':>8s}")
    for r in rows:
        print(f"{r['arch']:20s} {r['group']:18s} {r['variant']:20s} {r['ms']:8.2f} {r['ratio_to_first']:8.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"reps": args.reps, "torch_threads": torch.get_num_threads(),
                                   "machine": platform.platform(), "torch": torch.__version__, "rows": rows},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
