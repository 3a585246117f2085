"""The convolution lesson's point in numbers: loops vs im2col + one matmul.

    python benchmarks/bench_naive_conv.py

One small layer (batch 4, 16x16 pixels, 16 -> 32 channels, 3x3), forward and
backward, timed three ways: the loop reference (tinyvgg.naive), the reference
im2col layer (Conv2D) and the fast kernels (FastConv2D).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, median, print_table, timed, write_json  # noqa: E402

from tinyvgg.classroom import naive  # noqa: E402
from tinyvgg.fastconv import FastConv2D  # noqa: E402
from tinyvgg.layers import Conv2D  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default="benchmarks/results/naive_conv.json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 16, 16)).astype(np.float32)
    layers = {"im2col (reference)": Conv2D(16, 32, rng=rng), "im2col (fast)": FastConv2D(16, 32, rng=rng)}
    W, b = layers["im2col (reference)"].params["W"], layers["im2col (reference)"].params["b"]
    dout = rng.standard_normal((4, 16, 16, 32)).astype(np.float32)

    def loops():
        naive.conv2d_forward(x, W, b, 1)
        naive.conv2d_backward(x, W, dout, 1)
    times = {"naive loops": median([timed(loops) for _ in range(args.repeats)])}
    for name, layer in layers.items():
        def step(layer=layer):
            layer.forward(x, train=True)
            layer.backward(dout)
        step()
        times[name] = median([timed(step) for _ in range(max(args.repeats, 20))])
    base = times["naive loops"]
    print_table([[name, f"{t * 1000:.2f}", f"{base / t:.0f}x"] for name, t in times.items()],
                ["forward + backward", "ms", "speed-up over loops"])
    write_json(args.json, {"machine": machine_info(), "layer": "4x16x16x16 -> 32, 3x3", "seconds": times})


if __name__ == "__main__":
    main()
