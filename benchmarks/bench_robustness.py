"""Does training learn on every seed? Run the training command over seeds and count the failures.

    python benchmarks/bench_robustness.py                                  # the four sweeps below, seeds 0-4
    python benchmarks/bench_robustness.py --sweeps shapes glyphs-plain --seeds 0 1 2
    python benchmarks/bench_robustness.py --sweeps glyphs --extra --lr 0.005 --warmup-epochs 0

A sweep is one training command (``python -m tinyvgg.train`` with its flags), run
once per seed, one run at a time, each in its own process:

- ``shapes``: the default command, exactly as the README's first command runs it
  (VGG16 with batch normalization, the default);
- ``glyphs``: the defaults on the built-in digits (``--data glyphs``);
- ``shapes-plain``, ``glyphs-plain``: the same with ``--no-batch-norm``, the paper's network.

For each run it prints the best validation accuracy (and its epoch), the accuracy
after the first epoch, the epochs run, the training seconds and a verdict: "ok" at
or above ``--goal`` (95%), "low" below it, "collapsed" when the last epoch's
validation accuracy is below twice chance (the run ended at or fell back to
guessing), "diverged" when the run stopped on the divergence guard. A table per
sweep ends with the count of runs below the goal. Everything goes to a JSON file
(``benchmarks/results/``) too. Timing on a shared machine swings 20-30%.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, print_table, write_json  # noqa: E402

SWEEPS = {
    "shapes": [],
    "glyphs": ["--data", "glyphs"],
    "shapes-plain": ["--no-batch-norm"],
    "glyphs-plain": ["--data", "glyphs", "--no-batch-norm"],
}


def run_once(flags, seed, folder, goal):
    """Train once in a fresh process; its history and verdict as a dict."""
    out = os.path.join(folder, f"seed{seed}")
    command = [sys.executable, "-m", "tinyvgg.train", *flags, "--seed", str(seed), "--out", out, "--quiet"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    history_path = os.path.join(out, "history.json")
    history = {"val_accuracy": [], "seconds": []}
    if os.path.exists(history_path):
        with open(history_path) as f:
            history = json.load(f)
    val = [v for v in history["val_accuracy"] if v is not None]
    classes = 10
    record = {"seed": seed, "command": " ".join(command[1:]), "exit": result.returncode, "wall_seconds": wall,
              "train_seconds": sum(history["seconds"]), "epochs": len(val), "val_accuracy": val,
              "best": max(val) if val else None, "best_epoch": val.index(max(val)) + 1 if val else None,
              "first_epoch": val[0] if val else None, "error": result.stderr.strip().splitlines()[-1:]}
    if "training diverged" in result.stderr:
        record["verdict"] = "diverged"
    elif result.returncode != 0:
        record["verdict"] = "failed"
    elif not val or val[-1] < 2 / classes:
        record["verdict"] = "collapsed"
    else:
        record["verdict"] = "ok" if record["best"] >= goal else "low"
    return record


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweeps", nargs="+", choices=list(SWEEPS), default=list(SWEEPS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--goal", type=float, default=0.95, help="the validation accuracy every seed must reach")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="more flags for every run (put last), e.g. --extra --lr 0.005")
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "robustness.json"))
    args = p.parse_args()
    print(json.dumps(machine_info()))
    results = {"machine": machine_info(), "goal": args.goal, "extra": args.extra, "sweeps": {}}
    with tempfile.TemporaryDirectory(prefix="tinyvgg-robustness-") as folder:
        for name in args.sweeps:
            flags = SWEEPS[name] + args.extra
            print(f"\n== {name}: python -m tinyvgg.train {' '.join(flags)} --seed S", flush=True)
            records = []
            for seed in args.seeds:
                records.append(run_once(flags, seed, os.path.join(folder, name), args.goal))
                r = records[-1]
                print(f"   seed {seed}: {r['verdict']}, best {r['best']}, {r['train_seconds']:.0f} s", flush=True)
            rows = [(r["seed"], f"{r['best']:.4f}" if r["best"] is not None else "-", r["best_epoch"] or "-",
                     f"{r['first_epoch']:.3f}" if r["first_epoch"] is not None else "-", r["epochs"],
                     f"{r['train_seconds']:.0f}", r["verdict"]) for r in records]
            print_table(rows, ("seed", "best val acc", "at epoch", "epoch 1", "epochs", "train s", "verdict"))
            below = sum(r["verdict"] != "ok" for r in records)
            print(f"{name}: {below} of {len(records)} runs below {args.goal:.0%}")
            results["sweeps"][name] = {"flags": flags, "runs": records, "below_goal": below}
            write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
