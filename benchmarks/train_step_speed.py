"""Training-step time of the default network in float32 and in bf16 autocast, on this CPU.

    .venv/bin/python benchmarks/train_step_speed.py [--steps 20] [--batch 16] [--crop 128]

Prints the CPU (model, vector extensions, native bf16) and the seconds per optimiser step
of each precision after a warm-up, with what ``train.precision: auto`` picks here. On a
CPU without native bf16 the bf16 steps are emulated and slower than float32: ``auto``
then trains in float32.
"""

from __future__ import annotations

import argparse
import time

import torch

from mmx.model.hardware import cpu_info, training_precision
from mmx.model.nets import build_network


def step_seconds(bf16: bool, *, steps: int, batch: int, crop: int, seed: int = 0) -> float:
    """Median wall seconds of one forward/backward/Adam step of the default U-Net."""
    gen = torch.Generator().manual_seed(seed)
    net = build_network("unet", n_classes=14, widths=[8, 16, 32, 64])
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, crop, crop, generator=gen).to(memory_format=torch.channels_last)
    y = (torch.rand(batch, 14, crop, crop, generator=gen) < 0.05).float()
    times = []
    for i in range(steps + 3):  # 3 warm-up steps
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    """Time both precisions and print them beside the machine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    args = parser.parse_args()
    print(f"CPU: {cpu_info().describe()}; torch threads {torch.get_num_threads()}")
    print(f"train.precision auto -> {training_precision('auto', accelerator='cpu')}")
    f32 = step_seconds(False, steps=args.steps, batch=args.batch, crop=args.crop)
    b16 = step_seconds(True, steps=args.steps, batch=args.batch, crop=args.crop)
    print(f"float32:     {f32:.3f} s/step")
    print(f"bf16-mixed:  {b16:.3f} s/step  ({f32 / b16:.2f}x float32's speed)")


if __name__ == "__main__":
    main()
