"""Speed on a loaded machine: our VGG16 step with the BLAS threads it chooses, against PyTorch's.

    python benchmarks/bench_under_load.py                  # one core kept busy by another process
    python benchmarks/bench_under_load.py --busy 0         # the same on a quiet machine
    python benchmarks/bench_under_load.py --case b --rounds 6

A competing process (``python -c "while True: pass"``, ``--busy`` of them) keeps cores busy
while three steps are taken in turn, round after round, so that all see the same load:

- ours, with a :class:`tinyvgg.threads.ThreadChooser` as the trainer uses it (its first steps
  measure 1, 2, ... threads and it keeps the fastest; the rounds after that are reported);
- ours at every core's thread (the BLAS library's default, and tinyvgg's before the chooser);
- PyTorch at its own default thread count (``torch.get_num_threads()``), which does not adapt.

Reports the median of each and the ratios, with the thread counts each used. PyTorch is not
a dependency: run it where torch is installed (e.g. ``PYTHONPATH=src /path/to/torch-env/bin/python``).
Timing on a shared 2-core machine swings 20-30%: quote medians and ratios, never one step.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_vgg_step import CASES, make_ours, make_torch  # noqa: E402
from common import blas_info, machine_info, median, write_json  # noqa: E402

from tinyvgg.threads import ThreadChooser, blas_threads, set_blas_threads, usable_cores  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", choices=sorted(CASES), default="a")
    p.add_argument("--busy", type=int, default=1, help="competing busy-loop processes (default: 1)")
    p.add_argument("--rounds", type=int, default=12, help="rounds after the chooser has chosen")
    p.add_argument("--json", default="benchmarks/results/under_load.json")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        raise SystemExit("this comparison needs PyTorch: run it with a Python that has torch installed")
    case, cores = CASES[args.case], usable_cores()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(1.0)  # let the busy loops settle on their cores
        _, ours = make_ours(case, "numpy")
        torch_step = make_torch(case, torch.get_num_threads())  # PyTorch's default: it sets its own count
        torch_threads = torch.get_num_threads()
        chooser = ThreadChooser(cores=cores)
        times = {"chosen": [], "all cores": [], "torch": []}
        measuring_steps = 0
        while chooser.choosing:  # the trainer's first steps
            with chooser.timed():
                ours()
            measuring_steps += 1
        for _ in range(args.rounds):
            set_blas_threads(chooser.count)
            start = time.perf_counter()
            ours()
            times["chosen"].append(time.perf_counter() - start)
            set_blas_threads(cores)
            start = time.perf_counter()
            ours()
            times["all cores"].append(time.perf_counter() - start)
            start = time.perf_counter()
            torch_step()
            times["torch"].append(time.perf_counter() - start)
    finally:
        for process in busy:
            process.kill()
    medians = {name: median(values) for name, values in times.items()}
    print(f"case {args.case}, {args.busy} busy process(es) on {cores} cores, {args.rounds} rounds; "
          f"BLAS {blas_info().get('internal_api')} {blas_info().get('architecture')}")
    print(f"  the chooser ({measuring_steps} steps to measure): {chooser.describe()}")
    print(f"  ours, {chooser.count} thread(s) (chosen):  {medians['chosen']:.3f} s a step (median)")
    print(f"  ours, {cores} threads (every core):     {medians['all cores']:.3f} s")
    print(f"  PyTorch, {torch_threads} threads (its default):  {medians['torch']:.3f} s")
    print(f"  chosen / PyTorch {medians['chosen'] / medians['torch']:.2f}; every core / PyTorch "
          f"{medians['all cores'] / medians['torch']:.2f}; chosen / every core "
          f"{medians['chosen'] / medians['all cores']:.2f}")
    write_json(args.json, {"machine": machine_info(), "case": args.case, "busy": args.busy, "cores": cores,
                           "chosen_threads": chooser.count, "torch_threads": torch_threads,
                           "chooser": chooser.describe(), "seconds": times, "medians": medians,
                           "blas_threads_after": blas_threads()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
