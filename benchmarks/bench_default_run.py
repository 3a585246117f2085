"""The whole default run, ``python -m tinyvgg.train``, against an earlier commit's, alternated.

    python benchmarks/bench_default_run.py --against cc49c00 --pairs 3
    python benchmarks/bench_default_run.py --against main~1 --pairs 2 --threads 1 -- --data shapes:1280

A step benchmark (bench_vgg_step.py, bench_versions.py) misses what a run does besides its steps: the
validation after every epoch, precise batch-norm statistics, checkpoints, the thread chooser's measuring
steps. This one times whole runs. A shared machine's speed drifts by 20-30% over minutes, so the two
versions run in the order A B B A A B ... (each pair in turn begins with the other, which cancels a steady
drift), one at a time, and the ratio quoted is the median of the pairs' ratios. The earlier commit's
package is unpacked (``git archive``) into a temporary folder and run from there (``PYTHONPATH``); both
versions get the same BLAS thread count through ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, which
every version respects (the thread chooser, where there is one, then keeps it). Extra arguments after
``--`` go to both commands.
"""
import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def unpack(revision, folder):
    """The folder to put on PYTHONPATH for ``revision``'s package (src/ layout or the older top-level one)."""
    for path, root in (("src/tinyvgg", os.path.join(folder, "src")), ("tinyvgg", folder)):
        archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", revision, path], capture_output=True)
        if archive.returncode == 0:
            tar_path = os.path.join(folder, "then.tar")
            with open(tar_path, "wb") as f:
                f.write(archive.stdout)
            with tarfile.open(tar_path) as tar:
                tar.extractall(folder, filter="data")
            return root
    raise SystemExit(f"git archive {revision}: {archive.stderr.decode().strip()}")


def one_run(pythonpath, threads, extra, folder, label):
    """(wall seconds, the run's own "N s of training", best validation accuracy, epochs that kept the running
    batch-norm statistics instead of recomputing them) of one default run."""
    out = tempfile.mkdtemp(prefix=f"{label}-", dir=folder)
    os.rmdir(out)  # the command wants a new folder
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    env.pop("TINYVGG_THREADS", None)
    version = subprocess.run([sys.executable, "-c", "import tinyvgg; print(tinyvgg.__file__)"], env=env, cwd=folder,
                             capture_output=True, text=True).stdout.strip()
    if not version.startswith(pythonpath):
        raise SystemExit(f"{label}: imported {version}, not the package under {pythonpath}")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tinyvgg.train", "--out", out, *extra], env=env,
                          cwd=folder, capture_output=True, text=True)  # with its epoch lines (bars go to stderr)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{label} failed:\n{done.stderr[-2000:]}")
    found = re.search(r"best validation accuracy ([\d.]+) .*?(\d+) s of training", done.stdout)
    if not found:
        raise SystemExit(f"{label}: no summary line in\n{done.stdout[-2000:]}")
    kept = len(re.findall(r"^epoch \d+ .*bn statistics: running", done.stdout, re.MULTILINE))
    return wall, int(found.group(2)), float(found.group(1)), kept


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--against", required=True, help="a git revision, e.g. cc49c00 or main~1")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("extra", nargs="*", help="arguments for both commands (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        os.mkdir(os.path.join(folder, "then"))
        os.mkdir(os.path.join(folder, "runs"))  # the commands' working folder: never one that holds a package,
        # which python -m would import first (the current folder comes before PYTHONPATH)
        versions = {"now": os.path.join(REPO, "src"), args.against: unpack(args.against, os.path.join(folder, "then"))}
        ratios, times = [], {name: [] for name in versions}
        for pair in range(args.pairs):
            order = ["now", args.against] if pair % 2 == 0 else [args.against, "now"]
            result = {name: one_run(versions[name], args.threads, args.extra, os.path.join(folder, "runs"),
                                    name.replace("/", "_")) for name in order}
            for name in order:
                wall, training, best, kept = result[name]
                times[name].append(wall)
                print(f"pair {pair + 1}: {name:10s} {wall:6.1f} s wall, {training} s of training, best {best:.3f}, "
                      f"running bn statistics kept in {kept} epochs", flush=True)
            ratios.append(result["now"][0] / result[args.against][0])
        print(f"{args.threads} BLAS thread(s); median wall: now {median(times['now']):.1f} s, {args.against} "
              f"{median(times[args.against]):.1f} s; now / {args.against} per pair: "
              f"{', '.join(f'{r:.3f}' for r in ratios)}; median {median(ratios):.3f}")


if __name__ == "__main__":
    main()
