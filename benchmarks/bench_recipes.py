"""Does every recipe succeed on every student's machine? Seeds x BLAS thread counts, each run against its threshold.

    python benchmarks/bench_recipes.py                                  # every recipe, seeds 0-4, threads 1 and 2
    python benchmarks/bench_recipes.py --recipes lesson09 --seeds 0 1 --threads 1
    python benchmarks/bench_recipes.py --jobs 2                         # two runs at once (accuracy only)

float32 training is chaotic: the thread count changes the order in which a matrix product adds
its terms, and so the last bits of every result, and over a run those differences grow into
other weights and other accuracies. A recipe that works for one rounding and not the next is on
a knife edge. So each recipe runs for every seed and thread count, in its own process with the
count fixed (``TINYVGG_THREADS``), and must reach its threshold every time:

- ``default``: ``python -m tinyvgg.train`` as the README runs it: best validation accuracy >= 0.95
  (what CI demands);
- ``shapes1280``: the same on ``--data shapes:1280``: >= 0.30 after epoch 3 and >= 0.80 within 10
  epochs, and no learning-rate cut while validation accuracy is within 0.05 of chance;
- ``lesson09``: lesson 9's training cell (the notebook itself, run with its ``SEED``): best validation
  accuracy >= 0.85;
- ``lesson10``: lesson 10's batch normalization against a plain network, both started with He's
  initialization: on every seed, the batch-normalized network's last-epoch training loss below the plain
  network's (the lesson's conclusion: batch normalization is faster from the same start);
- ``lesson13``: lesson 13's experiment: with flips and crops, a smaller gap between training and
  validation accuracy than without, on every seed (augmentation regularizes);
- ``lesson14``: lesson 14's experiment: the copied base, frozen and fine-tuned, each beats training
  from scratch on every seed.

The lessons run as notebooks, in a scratch folder, with the seed substituted in the cell that sets
it (``SEED = k``, or ``SEEDS = (...)`` for the lessons that loop over seeds themselves: one run of
the notebook covers every seed), so that what is measured is the lesson a student runs. Runs side by side (``--jobs 2``) change
no result (a run's rounding depends on its thread count, not on the machine's load), only the
seconds. Prints a table per recipe (the one in benchmarks/README.md) and writes JSON to
``benchmarks/results/``.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANCE = 0.1  # every recipe here has 10 classes


def train_command(extra):
    """A recipe that runs ``python -m tinyvgg.train`` and reads its history.json."""
    def run(seed, folder, env):
        out = os.path.join(folder, "run")
        result = subprocess.run([sys.executable, "-m", "tinyvgg.train", "--seed", str(seed), "--out", out, "--quiet"]
                                + extra, capture_output=True, text=True, env=env, check=False)
        if result.returncode:
            return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
        with open(os.path.join(out, "history.json")) as f:
            history = json.load(f)
        return {"val_accuracy": history["val_accuracy"], "lr": history["lr"], "seconds": sum(history["seconds"])}
    return run


def run_lesson(number, folder, env, line, replacement):
    """Execute lesson ``number`` in ``folder`` (its kernel's environment ``env``) with the first line matching
    ``line`` (a regex) replaced; returns (everything it printed, seconds)."""
    import nbformat
    from nbclient import NotebookClient
    name = next(n for n in sorted(os.listdir(os.path.join(ROOT, "lessons"))) if n.startswith(number + "_"))
    nb = nbformat.read(os.path.join(ROOT, "lessons", name), as_version=4)
    cells = [cell for cell in nb.cells if re.search(line, cell.source, re.MULTILINE)]
    if not cells:
        raise ValueError(f"{name} has no line {line!r} to vary")
    cells[0].source = re.sub(line, replacement, cells[0].source, count=1, flags=re.MULTILINE)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": folder}}).execute(env=env)
    text = "".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs)
    return text, time.perf_counter() - start


def lesson(number, pattern):
    """A recipe that executes lesson ``number`` with ``SEED = seed`` and reads the numbers ``pattern`` finds in
    its printed output (a list of per-epoch validation accuracies)."""
    def run(seed, folder, env):
        text, seconds = run_lesson(number, folder, env, r"^SEED = \d+", f"SEED = {seed}")
        found = re.search(pattern, text)
        if not found:
            return {"error": "the lesson printed no validation accuracies"}
        return {"val_accuracy": [float(v) for v in re.findall(r"[\d.]+", found.group(1))], "seconds": seconds}
    return run


def numbers(text):
    return [float(v) for v in re.findall(r"\d+\.\d+|\d+", text)]


def lesson_over_seeds(number, read):
    """A recipe for a lesson that loops over ``SEEDS`` itself: one run with ``SEEDS = (the seeds,)``;
    ``read(printed text, seeds)`` returns one result per seed."""
    def run(seeds, folder, env):
        text, seconds = run_lesson(number, folder, env, r"^SEEDS = \(.*\)$", f"SEEDS = {tuple(seeds)}")
        return {seed: dict(result, seconds=seconds) for seed, result in zip(seeds, read(text, seeds))}
    run.over_seeds = True
    return run


def read_lesson10(text, seeds):
    runs = {}
    for label, seed, loss, accuracies in re.findall(
            r"(plain|batch norm) +seed (\d+): mean training loss of the last epoch ([\d.]+); "
            r"validation accuracy \[([^\]]*)\]", text):
        runs[label, int(seed)] = (float(loss), numbers(accuracies))
    return [{"plain_loss": runs["plain", s][0], "bn_loss": runs["batch norm", s][0],
             "plain_accuracy": runs["plain", s][1][-1], "bn_accuracy": runs["batch norm", s][1][-1]} for s in seeds]


def read_lesson13(text, seeds):
    rows = {}
    for label, train, val in re.findall(r"(no augmentation|flips and crops) +training accuracy \[([^\]]*)\]"
                                        r" +validation \[([^\]]*)\]", text):
        rows[label] = [t - v for t, v in zip(numbers(train), numbers(val))]
    return [{"gap_without": rows["no augmentation"][k], "gap_with": rows["flips and crops"][k]}
            for k in range(len(seeds))]


def read_lesson14(text, seeds):
    rows = {how: numbers(values) for how, values in
            re.findall(r"(from scratch|frozen base|fine-tuned) +validation accuracy per seed \[([^\]]*)\]", text)}
    return [{how: rows[how][k] for how in rows} for k in range(len(seeds))]


def default_verdict(result):
    best = max(v for v in result["val_accuracy"] if v is not None)
    return best >= 0.95, f"{best:.3f}"


def shapes1280_verdict(result):
    acc, lr = result["val_accuracy"], result["lr"]
    cut_at_chance = [e for e in range(1, len(lr)) if lr[e] < lr[e - 1] and acc[e - 1] <= CHANCE + 0.05]
    ok = acc[2] >= 0.30 and max(acc) >= 0.80 and not cut_at_chance
    return ok, f"{acc[2]:.2f} / {max(acc):.2f}" + (f", cut at chance in epoch {cut_at_chance[0] + 1}"
                                                     if cut_at_chance else "")


def lesson09_verdict(result):
    best = max(result["val_accuracy"])
    return best >= 0.85, f"{best:.3f}"


def lesson10_verdict(result):
    return result["bn_loss"] < result["plain_loss"], (f"{result['plain_loss']:.3f} -> {result['bn_loss']:.3f} "
                                                      f"({result['plain_accuracy']:.2f} -> {result['bn_accuracy']:.2f})")


def lesson13_verdict(result):
    return result["gap_with"] < result["gap_without"], f"{result['gap_without']:.2f} -> {result['gap_with']:.2f}"


def lesson14_verdict(result):
    scratch = result["from scratch"]
    ok = result["frozen base"] > scratch and result["fine-tuned"] > scratch
    return ok, f"{scratch:.2f} / {result['frozen base']:.2f} / {result['fine-tuned']:.2f}"


RECIPES = {
    "default": (train_command([]), default_verdict, "best validation accuracy (>= 0.95)"),
    "shapes1280": (train_command(["--data", "shapes:1280"]), shapes1280_verdict,
                   "validation accuracy after epoch 3 (>= 0.30) / best in 10 epochs (>= 0.80)"),
    "lesson09": (lesson("09", r"validation accuracy per epoch: \[([^\]]*)\]"), lesson09_verdict,
                 "best validation accuracy (>= 0.85)"),
    "lesson10": (lesson_over_seeds("10", read_lesson10), lesson10_verdict,
                 "last epoch's training loss, plain -> batch norm (validation accuracy), batch norm lower"),
    "lesson13": (lesson_over_seeds("13", read_lesson13), lesson13_verdict,
                 "training-validation gap without -> with flips and crops (smaller with)"),
    "lesson14": (lesson_over_seeds("14", read_lesson14), lesson14_verdict,
                 "validation accuracy from scratch / frozen base / fine-tuned (both above from scratch)"),
}


def run_one(recipe, seeds, threads):
    """{seed: result} of ``recipe`` at ``threads``: one run per seed, or one run for every seed of a lesson
    that loops over its seeds itself."""
    run, verdict, _ = RECIPES[recipe]
    env = dict(os.environ, TINYVGG_THREADS=str(threads))  # the runs' processes (a notebook's kernel too)
    folder = tempfile.mkdtemp(prefix=f"recipe-{recipe}-")
    results = {}
    try:
        for seed in ([seeds] if getattr(run, "over_seeds", False) else seeds):
            got = run(seed, folder, env)
            results.update(got if isinstance(seed, list) else {seed: got})
    except Exception as err:  # noqa: BLE001 (a run that crashes is a failed run, reported in its rows)
        results = {seed: {"error": f"{type(err).__name__}: {str(err)[-300:]}"} for seed in seeds}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for result in results.values():
        if "error" not in result:
            result["ok"], result["shown"] = verdict(result)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--jobs", type=int, default=1, help="runs at once (their seconds then share the machine)")
    p.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results", "recipes.json"))
    args = p.parse_args(argv)
    work = []  # one unit per run: a seed of a recipe, or every seed of a lesson that loops over them
    for recipe in args.recipes:
        over_seeds = getattr(RECIPES[recipe][0], "over_seeds", False)
        for threads in args.threads:
            work += [(recipe, tuple(args.seeds), threads)] if over_seeds else \
                [(recipe, (seed,), threads) for seed in args.seeds]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_one, recipe, list(seeds), threads): (recipe, threads)
                   for recipe, seeds, threads in work}
        for future in concurrent.futures.as_completed(futures):
            recipe, threads = futures[future]
            for seed, result in future.result().items():
                results[recipe, seed, threads] = result
                print(f"{recipe} seed {seed} threads {threads}: "
                      + (f"error: {result['error']}" if "error" in result else
                         f"{'ok' if result['ok'] else 'BELOW'} {result['shown']} ({result['seconds']:.0f} s)"),
                      flush=True)
    for recipe in args.recipes:
        print(f"\n{recipe}: {RECIPES[recipe][2]}\n")
        print("| seed | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in args.threads) + " |")
        print("|---|" + "---|" * len(args.threads))
        for seed in args.seeds:
            cells = []
            for threads in args.threads:
                r = results[recipe, seed, threads]
                cells.append(f"error: {r['error'][:60]}" if "error" in r else r["shown"] + ("" if r["ok"] else " **below**"))
            print(f"| {seed} | " + " | ".join(cells) + " |")
        failed = sum(not results[recipe, s, t].get("ok") for s in args.seeds for t in args.threads)
        print(f"\n{failed} of {len(args.seeds) * len(args.threads)} runs below the threshold")
    write_json(args.json, {"machine": machine_info(), "jobs": args.jobs, "runs": [
        dict(recipe=r, seed=s, threads=t, **res) for (r, s, t), res in sorted(results.items())]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
