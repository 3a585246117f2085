"""Time one VGG16 training step (forward, backward, momentum-SGD update), float32.

    python benchmarks/bench_vgg_step.py                       # both cases, ours only
    python benchmarks/bench_vgg_step.py --compare torch       # and PyTorch, interleaved
    python benchmarks/bench_vgg_step.py --case a --breakdown  # where the time goes
    python benchmarks/bench_vgg_step.py --case a --compare torch --layers  # each convolution against PyTorch's
    python benchmarks/bench_vgg_step.py --case a --compare torch --ceiling # the step if im2col copies were free
    python benchmarks/bench_vgg_step.py --backend cupy        # on a GPU (synchronized timing)

Case a: 32x32x3 input, batch 64, 10 classes, fc_units 512.
Case b: 224x224x3 input, batch 8, 1000 classes, fc_units 4096 (the paper's VGG16).

Prints a table and writes JSON (--json). Reported: median seconds per step over
--steps steps after --warmup steps, images per second, achieved GFLOP/s and its
fraction of a large matmul's GFLOP/s measured in the same process, peak memory
(each framework alone in a fresh subprocess: peak RSS minus RSS after imports),
and with --compare torch our time divided by PyTorch's, the two steps taken in
turn so that both see the same machine load. PyTorch is not a dependency of
tinyvgg; without it the comparison is skipped with a note.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, matmul_peak_gflops, median, print_table, timed, write_json  # noqa: E402

from tinyvgg import backend  # noqa: E402
from tinyvgg.layers import SoftmaxCrossEntropy  # noqa: E402
from tinyvgg.models import vgg16  # noqa: E402
from tinyvgg.optim import FastSGD  # noqa: E402

CASES = {
    "a": dict(image=32, batch=64, classes=10, fc_units=512),
    "b": dict(image=224, batch=8, classes=1000, fc_units=4096),
}


def training_flops(model, case):
    """FLOPs of one step: forward 2*MACs, backward 2*MACs for dW and 2*MACs for dx (not for the first layer)."""
    shape, total, first = model.input_shape, 0, None
    for layer in model.layers:
        macs = layer.multiply_adds(shape)
        shape = layer.output_shape(shape)
        if macs and first is None:
            first = macs
        total += macs
    return case["batch"] * (6 * total - 2 * first)


def make_ours(case, backend_name, seed=0):
    model = vgg16(num_classes=case["classes"], input_shape=(case["image"],) * 2 + (3,), fc_units=case["fc_units"],
                  seed=seed, kernels="fast").to(backend_name)
    rng = np.random.default_rng(seed)
    x = backend.to_device(rng.standard_normal((case["batch"], case["image"], case["image"], 3), np.float32),
                          backend_name)
    y = backend.to_device(rng.integers(0, case["classes"], case["batch"]), backend_name)
    optimizer = FastSGD(model.named_params(), lr=0.001, momentum=0.9, weight_decay=5e-4)  # what training runs
    loss_fn = SoftmaxCrossEntropy()
    model.input_grad = False  # as in training: no dL/d(images)

    def step():
        loss_fn.forward(model.forward(x, train=True), y)
        model.backward(loss_fn.backward())
        optimizer.step(model.named_grads())
    return model, step


def make_torch(case, threads):
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    layers, channels = [], 3
    for repeats, width in zip((2, 2, 3, 3, 3), (64, 128, 256, 512, 512)):
        for _ in range(repeats):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2))
    side = case["image"] // 32
    layers += [nn.Flatten(), nn.Linear(side * side * 512, case["fc_units"]), nn.ReLU(inplace=True), nn.Dropout(0.5),
               nn.Linear(case["fc_units"], case["fc_units"]), nn.ReLU(inplace=True), nn.Dropout(0.5),
               nn.Linear(case["fc_units"], case["classes"])]
    model = nn.Sequential(*layers).train()
    x = torch.randn(case["batch"], 3, case["image"], case["image"])
    y = torch.randint(0, case["classes"], (case["batch"],))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


def without_copies(case, backend_name):
    """Our step with the im2col copies skipped: the same matmuls and elementwise work on columns left
    over in the scratch buffers. Its numbers are wrong; its time is what the im2col route would cost if
    the copies were free, a ceiling on what faster copies can win. A model of its own, so the real
    step's weights are not disturbed (this one's may turn to inf or NaN: no slower to multiply)."""
    from tinyvgg import fastconv
    _, step = make_ours(case, backend_name)
    real = fastconv.pad_into, fastconv.im2col_padded

    def pad_skipped(x, pad, slot):
        n, H, W, C = x.shape
        return fastconv.scratch(slot, (n, H + 2 * pad, W + 2 * pad, C), x.dtype, backend.get_array_module(x))

    def columns_skipped(x_pad, K, slot):
        n, Hp, Wp, C = x_pad.shape
        rows = n * (Hp - K + 1) * (Wp - K + 1)
        return fastconv.scratch(slot, (rows, K * K * C), x_pad.dtype, backend.get_array_module(x_pad))

    def step_without_copies():
        fastconv.pad_into, fastconv.im2col_padded = pad_skipped, columns_skipped
        try:
            with np.errstate(all="ignore"):
                step()
        finally:
            fastconv.pad_into, fastconv.im2col_padded = real
    return step_without_copies


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_of(framework, case_name, backend_name, threads):
    """Run in a subprocess: peak RSS growth (MB) over 3 steps of one framework alone."""
    case = CASES[case_name]
    if framework == "torch":
        import torch  # noqa: F401  (imports count as baseline)
    base = rss_mb()
    step = make_torch(case, threads) if framework == "torch" else make_ours(case, backend_name)[1]
    for _ in range(3):
        step()
    print(json.dumps({"peak_mb": peak_rss_mb() - base}))


def peak_rss_mb():
    """This process's peak resident memory (VmHWM). Not ru_maxrss: that survives exec, so a child
    started from a large parent would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB -> MB on Linux


def measure_memory(framework, case_name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-of", framework, "--case", case_name,
           "--backend", args.backend, "--threads", str(args.threads)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mb"]


def breakdown(model, step, repeats=3):
    """Seconds per step by kind of work, from timers wrapped around the layers and kernels."""
    import time
    from tinyvgg import fastconv, optim
    totals = {}

    def add(key, seconds):
        totals[key] = totals.get(key, 0.0) + seconds

    def wrap(obj, name, key):
        original = getattr(obj, name)

        def timed_call(*a, **k):
            start = time.perf_counter()
            result = original(*a, **k)
            backend.synchronize()
            add(key, time.perf_counter() - start)
            return result
        setattr(obj, name, timed_call)
        return original

    saved = []
    for name, key in (("pad_into", "im2col copies"), ("im2col_padded", "im2col copies")):
        saved.append((fastconv, name, wrap(fastconv, name, key)))
    for layer in model.layers:
        kind = type(layer).__name__
        for method in ("forward", "backward"):
            saved.append((layer, method, wrap(layer, method, f"{kind} {method}")))
    saved.append((optim.FastSGD, "step", wrap(optim.FastSGD, "step", "SGD update")))
    for _ in range(repeats):
        step()
    for obj, name, original in saved:
        if isinstance(obj, type) or obj is fastconv:
            setattr(obj, name, original)
        else:
            delattr(obj, name)  # back to the class's method
    rows = {k: v / repeats for k, v in totals.items()}
    copies = rows.pop("im2col copies", 0.0)
    conv = rows.pop("FastConv2D forward", 0.0) + rows.pop("FastConv2D backward", 0.0)
    rows = {"conv matmuls and sums": conv - copies, "im2col copies": copies, **rows}
    return rows


def conv_layers(model, case):
    """(name, H, C, F) of each convolution of a VGG16 built for ``case``, in order."""
    shape, layers = model.input_shape, []
    for name, layer in zip(model.names, model.layers):
        if type(layer).__name__ == "Conv2D":
            layers.append((name, shape[0], layer.in_channels, layer.out_channels))
        shape = layer.output_shape(shape)
    return layers


def compare_layers(model, case, args, repeats=5):
    """Per convolution: our forward + backward against PyTorch's, in turn, each after a quiet gap.
    The first layer skips dx, as in the training step."""
    import torch
    torch.set_num_threads(args.threads)
    from tinyvgg.fastconv import FastConv2D
    rng, N, rows = np.random.default_rng(0), case["batch"], []
    for number, (name, H, C, F) in enumerate(conv_layers(model, case)):
        input_grad = number > 0
        ours = FastConv2D(C, F, rng=rng)
        ours.input_grad = input_grad
        x = rng.standard_normal((N, H, H, C), np.float32)
        dout = rng.standard_normal((N, H, H, F), np.float32)
        conv = torch.nn.Conv2d(C, F, 3, padding=1)
        x_t = torch.randn(N, C, H, H, requires_grad=input_grad)
        dout_t = torch.randn(N, F, H, H)

        def ours_step():
            ours.forward(x, train=True)
            ours.backward(dout)

        def torch_step():
            x_t.grad = None
            conv.zero_grad(set_to_none=True)
            conv(x_t).backward(dout_t)
        ours_step(), torch_step()
        ours_times, torch_times = [], []
        for _ in range(repeats):
            time.sleep(args.gap)
            ours_times.append(timed(ours_step))
            time.sleep(args.gap)
            torch_times.append(timed(torch_step))
        flops = (3 if input_grad else 2) * 2 * N * H * H * 9 * C * F
        rows.append({"layer": name, "H": H, "C": C, "F": F, "ours_s": median(ours_times),
                     "torch_s": median(torch_times), "gflop": flops / 1e9})
    return rows


def run_case(name, args, peak):
    case = CASES[name]
    model, ours = make_ours(case, args.backend)
    flops = training_flops(model, case)
    compare = args.compare == "torch" and torch_available()
    torch_step = make_torch(case, args.threads) if compare else None
    ceiling_step = without_copies(case, args.backend) if args.ceiling else None
    for _ in range(args.warmup):
        for step in (ours, torch_step, ceiling_step):
            if step:
                step()
    ours_times, torch_times, ceiling_times = [], [], []
    for _ in range(args.steps):  # interleaved: all see the same machine load
        for step, times in ((ours, ours_times), (torch_step, torch_times), (ceiling_step, ceiling_times)):
            if step:
                time.sleep(args.gap)  # see --gap: OpenBLAS's threads would otherwise still hold a core
                times.append(timed(step))
    result = {"case": name, **case, "gflop_per_step": flops / 1e9, "ours_s": median(ours_times),
              "ours_times": ours_times}
    result["ours_images_per_s"] = case["batch"] / result["ours_s"]
    result["ours_gflops"] = flops / result["ours_s"] / 1e9
    result["ours_fraction_of_peak"] = result["ours_gflops"] / peak
    if torch_step:
        result.update(torch_s=median(torch_times), torch_times=torch_times)
        result["ratio"] = result["ours_s"] / result["torch_s"]
        result["ratio_median_of_pairs"] = median([a / b for a, b in zip(ours_times, torch_times)])
    if ceiling_step:
        result.update(without_copies_s=median(ceiling_times), without_copies_times=ceiling_times)
    if args.memory:
        result["ours_peak_mb"] = measure_memory("ours", name, args)
        if compare:
            result["torch_peak_mb"] = measure_memory("torch", name, args)
    if args.breakdown:
        result["breakdown_s"] = breakdown(model, ours)
    if args.layers and torch_available():
        result["layers"] = compare_layers(model, case, args)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", choices=["a", "b", "both"], default="both")
    p.add_argument("--backend", choices=backend.BACKENDS, default="numpy")
    p.add_argument("--compare", choices=["torch"], help="also time PyTorch (if installed), interleaved")
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--gap", type=float, default=0.3,
                   help="seconds of quiet before each timed step (default 0.3): after a call, OpenBLAS's worker "
                        "threads spin for ~0.1 s, and a PyTorch step started then runs up to 2x slower")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory subprocesses")
    p.add_argument("--breakdown", action="store_true", help="time each kind of work in our step")
    p.add_argument("--layers", action="store_true",
                   help="time each convolution (forward + backward) alone against PyTorch's (needs PyTorch)")
    p.add_argument("--ceiling", action="store_true",
                   help="also time our step with the im2col copies skipped (wrong numbers, same matmuls): "
                        "the most that faster copies could win")
    p.add_argument("--json", default="benchmarks/results/vgg_step.json")
    p.add_argument("--memory-of", choices=["ours", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    backend.require(args.backend)
    if args.memory_of:
        return memory_of(args.memory_of, args.case, args.backend, args.threads)
    if (args.compare == "torch" or args.layers) and not torch_available():
        print("PyTorch is not installed: the comparisons with it are skipped (pip install torch to see them).")
    info = machine_info()
    xp = backend.require(args.backend)
    peak = matmul_peak_gflops(xp=xp)
    print(f"BLAS: {info['blas']}  threads: {args.threads}  matmul peak: {peak:.0f} GFLOP/s  backend: {args.backend}")
    results = [run_case(name, args, peak) for name in (["a", "b"] if args.case == "both" else [args.case])]
    headers = ["case", "batch", "ours s/step", "img/s", "GFLOP/s", "of peak"]
    if any("torch_s" in r for r in results):
        headers += ["torch s/step", "ours/torch"]
    if args.memory:
        headers += ["ours MB", "torch MB"]
    rows = []
    for r in results:
        row = [f"{r['case']} ({r['image']}px)", r["batch"], f"{r['ours_s']:.3f}", f"{r['ours_images_per_s']:.1f}",
               f"{r['ours_gflops']:.0f}", f"{r['ours_fraction_of_peak']:.0%}"]
        if "torch_s" in r:
            row += [f"{r['torch_s']:.3f}", f"{r['ratio']:.2f}x"]
        elif "torch s/step" in headers:
            row += ["-", "-"]
        if args.memory:
            row += [f"{r.get('ours_peak_mb') or 0:.0f}", f"{r['torch_peak_mb']:.0f}" if r.get("torch_peak_mb") else "-"]
        rows.append(row)
    print_table(rows, headers)
    for r in results:
        if "without_copies_s" in r:
            vs_torch = f", {r['without_copies_s'] / r['torch_s']:.2f}x PyTorch's" if "torch_s" in r else ""
            print(f"\ncase {r['case']} with the im2col copies skipped (--ceiling): "
                  f"{r['without_copies_s']:.3f} s/step{vs_torch}; the copies cost "
                  f"{r['ours_s'] - r['without_copies_s']:.3f} s of our step")
    for r in results:
        if "breakdown_s" in r:
            total = sum(r["breakdown_s"].values())
            print(f"\nbreakdown, case {r['case']} (seconds per step, share):")
            for key, seconds in sorted(r["breakdown_s"].items(), key=lambda kv: -kv[1]):
                print(f"  {key:<24} {seconds:7.3f}  {seconds / total:5.1%}")
    for r in results:
        if r.get("layers"):
            print(f"\nconvolutions alone, case {r['case']} (forward + backward, ms; GFLOP/s):")
            print_table([[row["layer"], f"{row['H']}x{row['H']}", f"{row['C']}->{row['F']}",
                          f"{row['ours_s'] * 1e3:.1f}", f"{row['torch_s'] * 1e3:.1f}",
                          f"{row['ours_s'] / row['torch_s']:.2f}x", f"{row['gflop'] / row['ours_s']:.0f}",
                          f"{row['gflop'] / row['torch_s']:.0f}"] for row in r["layers"]],
                        ["layer", "size", "channels", "ours", "torch", "ours/torch", "ours GF/s", "torch GF/s"])
    write_json(args.json, {"machine": info, "matmul_peak_gflops": peak, "threads": args.threads,
                           "backend": args.backend, "results": results})


if __name__ == "__main__":
    main()
