"""Data parallelism on this machine: the fused all-reduce against a bare one, step times at 1 and 2 ranks,
and a model of the ring all-reduce for many GPUs, beside the VGG paper's 3.75x on four.

    python benchmarks/bench_data_parallel.py            # about 2.5 minutes on 2 cores; needs the mpi extra

It starts ``mpiexec`` itself (as root it passes Open MPI's two OMPI_ALLOW_RUN_AS_ROOT* variables):

1. all-reduce: VGG16 at the paper's width has 138 M parameters, 553 MB of float32 gradients. On 2 ranks,
   interleaved: tinyvgg's step (pack every gradient into one flat buffer, then one ``Allreduce``)
   against a bare ``mpi4py`` ``Allreduce`` of one 553 MB buffer. Medians; bandwidth as bytes / time
   and as the ring's "bus bandwidth" 2(N-1)/N x bytes / time.
2. steps: the default network (width 0.25, 32x32, batch 64) and VGG16 at the paper's width (224x224,
   batch 2): one rank with 2 BLAS threads against 2 ranks with 1 thread each, launches interleaved.
   Speed-up = (a step on 1 rank) / (a step on 2 ranks); scaling efficiency = speed-up / 2.
3. the ring model: 2(N-1)/N x bytes / bandwidth (+ 2(N-1) latencies) for N = 4, 8, 64 GPUs on NVLink and
   on 25 Gb/s Ethernet, and the speed-up it allows a step whose compute takes T on one GPU.

Results and the machine go to benchmarks/README.md ("Data parallelism"); never timed in tests.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PAPER_SPEEDUP_4_GPUS = 3.75
#: (name, bytes per second per GPU and direction, latency per message): NVLink 3 (A100: 12 links of
#: 25 GB/s each way) and 25 Gb/s Ethernet (3.125 GB/s), with typical latencies
LINKS = (("NVLink (300 GB/s)", 300e9, 5e-6), ("25 Gb/s Ethernet", 25e9 / 8, 30e-6))


def ring_allreduce_seconds(nbytes, ranks, bandwidth, latency=0.0):
    """The ring all-reduce: a reduce-scatter and an all-gather of N-1 steps each, every step sending
    1/N of the buffer; so each rank sends 2(N-1)/N x bytes, whatever N, plus 2(N-1) latencies."""
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def _env(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OMPI_MCA_rmaps_base_oversubscribe="1")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def _launch(ranks, threads, *args):
    """Run this script's ``args`` part on ``ranks`` processes of ``threads`` BLAS threads; its JSON line."""
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    command = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(ranks), sys.executable, __file__, *args]
    done = subprocess.run(command, env=_env(threads), capture_output=True, text=True, timeout=600, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(args)} on {ranks} ranks failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def vgg16_paper(image_size, num_classes=1000):
    from tinyvgg.models import build_model
    return build_model(dict(depth="vgg16", num_classes=num_classes, input_shape=(image_size, image_size, 3),
                            width=1.0, fc_units=4096, include_top=True, batch_norm=False),
                       rng=np.random.default_rng(0), kernels="fast")


def part_allreduce(repeats):
    """On every rank: the fused all-reduce of VGG16's gradients against a bare Allreduce, interleaved."""
    from mpi4py import MPI

    from tinyvgg.training.parallel import GradientBuffer
    from tinyvgg.training.world import World
    world = World(MPI.COMM_WORLD)
    shapes = {name: p.shape for name, p in vgg16_paper(224).named_params().items()}
    grads = {name: np.full(shape, 1e-3, dtype=np.float32) for name, shape in shapes.items()}
    fused = GradientBuffer(shapes, np)
    bare = np.ones(fused.flat.size, dtype=np.float32)
    def ours():
        fused.add(grads, first=True)
        world.allreduce(fused.flat)

    def bare_allreduce():
        world.comm.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM)

    times = {ours: [], bare_allreduce: []}
    for round_ in range(repeats + 1):  # the first round pays the page faults: not counted
        for fn in (ours, bare_allreduce) if round_ % 2 else (bare_allreduce, ours):  # each goes first in turn
            world.comm.Barrier()
            start = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - start)
    tinyvgg, plain = times[ours], times[bare_allreduce]
    if world.rank == 0:
        t, b = float(np.median(tinyvgg[1:])), float(np.median(plain[1:]))
        nbytes = fused.flat.nbytes
        print(json.dumps({"parameters": int(fused.flat.size), "megabytes": nbytes / 1e6, "ranks": world.size,
                          "fused_seconds": t, "bare_seconds": b, "ratio": t / b,
                          "bare_gigabytes_per_second": nbytes / b / 1e9,
                          "bare_bus_gigabytes_per_second": ring_allreduce_seconds(nbytes, world.size, 1) / b / 1e9}))


def part_step(network, steps, sync_batch_norm=True):
    """Median seconds of a training step of ``network`` on this run's ranks (1: no MPI at all)."""
    from tinyvgg.models import build_model
    from tinyvgg.optim import FastSGD
    from tinyvgg.training import LocalStep, Trainer
    from tinyvgg.training.parallel import DataParallelStep, prepare_model_for_ranks, rows
    from tinyvgg.training.world import World
    ranks = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    if ranks > 1:
        from mpi4py import MPI
        world = World(MPI.COMM_WORLD)
    else:
        world = World()
    rng = np.random.default_rng(0)
    if network == "default":
        model = build_model(dict(depth="vgg16", num_classes=10, input_shape=(32, 32, 3), width=0.25, fc_units=256,
                                 include_top=True, batch_norm=True), rng=rng, kernels="fast")
        batch, size = 64, 32
    else:
        model, batch, size = vgg16_paper(224, num_classes=10), 2, 224
    step = None
    if world.size > 1:  # made ready before the optimizer is built
        step = DataParallelStep(LocalStep(prepare_model_for_ranks(model, world, sync_batch_norm)), world)
    trainer = Trainer(model, FastSGD(model.named_params(), lr=1e-4, momentum=0.9), rng, progress=False, step=step)
    model.input_grad = False
    start, stop = rows(batch, world.size, world.rank)
    x = rng.standard_normal((stop - start, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch)                              # the labels of the whole batch
    times = []
    for _ in range(steps + 1):                                  # the first step allocates: not counted
        if world.comm is not None:
            world.comm.Barrier()
        begin = time.perf_counter()
        trainer.train_step(x, y if world.size > 1 else y[start:stop])
        times.append(time.perf_counter() - begin)
    if world.rank == 0:
        print(json.dumps({"network": network, "ranks": world.size, "batch": batch,
                          "seconds": float(np.median(times[1:])),
                          "parameters": model.num_params()}))


def ring_model_table(nbytes):
    lines = [(f"ring all-reduce of {nbytes / 1e6:.0f} MB (VGG16's gradients), seconds, and the speed-up of N GPUs "
              "on a step whose compute takes T on one GPU (batch fixed, split N ways, no overlap):")]
    for name, bandwidth, latency in LINKS:
        for N in (4, 8, 64):
            t = ring_allreduce_seconds(nbytes, N, bandwidth, latency)
            speedups = "  ".join(f"T={T:g} s: {T / (T / N + t):.2f}x" for T in (0.5, 5.0))
            lines.append(f"  {name:18s} N={N:2d}: {t * 1e3:8.1f} ms   {speedups}")
    # the paper: 3.75 = T / (T/4 + t)  =>  t = T (1/3.75 - 1/4)
    overhead = 1 / PAPER_SPEEDUP_4_GPUS - 1 / 4
    lines.append(f"  the paper's {PAPER_SPEEDUP_4_GPUS}x on 4 GPUs means an all-reduce (plus the rest of the "
                 f"overhead) of {overhead:.4f} T, 1/{1 / overhead:.0f} of a one-GPU step")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["allreduce", "step"], help="(internal) what a launched rank measures")
    p.add_argument("--network", choices=["default", "vgg16-paper"], default="default")
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--sync-batch-norm", action=argparse.BooleanOptionalAction, default=True,
                   help="(with --part step) synchronized batch statistics on 2 ranks")
    p.add_argument("--rounds", type=int, default=2, help="interleaved launches per configuration")
    p.add_argument("--out", default=os.path.join(HERE, "results", "data_parallel.json"))
    args = p.parse_args()
    if args.part == "allreduce":
        return part_allreduce(args.repeats)
    if args.part == "step":
        return part_step(args.network, args.repeats, args.sync_batch_norm)

    from common import machine_info, write_json
    result = {"machine": machine_info(), "allreduce": _launch(2, 1, "--part", "allreduce", "--repeats",
                                                                  str(args.repeats))}
    a = result["allreduce"]
    print(f"all-reduce of {a['megabytes']:.0f} MB on 2 ranks: tinyvgg (pack + Allreduce) {a['fused_seconds']:.3f} s, "
          f"bare Allreduce {a['bare_seconds']:.3f} s, ratio {a['ratio']:.2f}; "
          f"bare {a['bare_gigabytes_per_second']:.2f} "
          f"GB/s ({a['bare_bus_gigabytes_per_second']:.2f} GB/s bus bandwidth)")
    for network, repeats in (("default", args.repeats), ("vgg16-paper", 1)):  # VGG16: ~5 s a step here
        runs = {1: [], 2: []}
        for _ in range(args.rounds):  # interleaved: 1 rank x 2 threads, then 2 ranks x 1 thread, again
            for ranks, threads in ((1, 2), (2, 1)):
                runs[ranks].append(_launch(ranks, threads, "--part", "step", "--network", network, "--repeats",
                                           str(repeats))["seconds"])
        one, two = float(np.median(runs[1])), float(np.median(runs[2]))
        result[network] = {"one_rank_two_threads": runs[1], "two_ranks_one_thread": runs[2],
                           "speedup": one / two, "efficiency": one / two / 2}
        print(f"{network}: a step takes {one:.3f} s on 1 rank x 2 threads, {two:.3f} s on 2 ranks x 1 thread "
              f"(speed-up {one / two:.2f}, scaling efficiency {one / two / 2:.2f}); each run {runs}")
    result["ring_model"] = ring_model_table(a["megabytes"] * 1e6)
    print("\n".join(result["ring_model"]))
    write_json(args.out, result)
    print(f"results in {args.out}")


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
