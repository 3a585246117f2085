"""``python -m tinyvgg.assignments``: student versions of tinyvgg, and a grader they cannot fool.

``make OUT_DIR [--parts dense relu ...]`` writes a student copy (:mod:`tinyvgg.classroom.handout`) and its
``handout.json``, the parts it gave out. ``grade STUDENT_DIR... [--json REPORT] [--csv GRADES]`` grades
those parts (or ``--parts``) of each submission in a bubblewrap sandbox and awards every point in this
process (:mod:`tinyvgg.classroom.grader`).
Every option is checked before any grading; SIGTERM or Ctrl-C stops the batch cleanly: the
running part's processes end, its scratch folder goes, and the CSV and JSON of the
submissions graded so far are written.
"""
import argparse
import csv
import io
import json
import math
import os
import signal
import sys
import tempfile

from . import checkpoint, cli
from .classroom import cgroup
from .classroom.checks import PARTS
from .classroom.grader import UNSAFE_WARNING, grade, isolation, print_report
from .classroom.handout import make, read_manifest
from .classroom.report import brief, shown
from .classroom.scratch import process_alive, remove_leftovers
from .errors import UsageError

MAX_TIMEOUT = 3600.0               # seconds per part
MEMORY_RANGE = (0.25, 1024.0)      # GB per part: NumPy and Python alone need about 0.1


def _write_text(path, text):
    checkpoint.atomic_write(path, lambda f: f.write(text.encode()))


def _check_writable(path, flag, force):
    """Refuse before any grading an output that could not be written at the end (``/proc/x.csv``...)."""
    cli.output_path(path, flag, force)
    try:
        with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(path)), prefix=".tinyvgg-"):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write in its folder ({err.strerror}); choose another place.")


def validate(args):
    """One sentence for the first bad option, before any work (a UsageError)."""
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT):
        raise UsageError(f"--timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
                         f"got {args.timeout}.")
    low, high = MEMORY_RANGE
    if not (math.isfinite(args.memory_limit) and low <= args.memory_limit <= high):
        raise UsageError(f"--memory-limit must be between {low:g} and {high:g} GB, got {args.memory_limit}.")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed must be between 0 and 2**32 - 1, got {args.seed}.")
    repeated = sorted({p for p in args.parts or () if args.parts.count(p) > 1})
    if repeated:
        raise UsageError(f"--parts names {', '.join(repeated)} more than once; name each part once.")
    for name in args.student_dirs:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"the submission name {name!a} is not valid UTF-8; rename the folder.") from None
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path:
            _check_writable(path, flag, args.force)


def _failed_report(student_dir, error, parts):
    return {"submission": student_dir, "error": brief(error), "total": 0, "max": sum(PARTS[k] for k in parts),
            "parts": {k: {"points": 0, "max": PARTS[k], "reasons": [], "checks": []} for k in parts}}


def _write_outputs(args, reports):
    if args.json:
        _write_text(args.json, json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    if args.csv:
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["submission", *args.parts, "total", "max", "note"])
        for r in reports:
            writer.writerow([r["submission"], *(r["parts"][k]["points"] for k in args.parts), r["total"], r["max"],
                             shown(r.get("error", ""))])
        _write_text(args.csv, rows.getvalue())


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP, Ctrl-C) while grading: handled like Ctrl-C, with the signal's exit code."""

    def __init__(self, signum):
        super().__init__(signum)
        self.code = 128 + signum


def _stop_on_signal(signum, frame):
    raise Stopped(signum)  # the running part is killed, its scratch and cgroup removed, what was graded is written


def grade_all(args):
    """Grade every submission; a SIGTERM or Ctrl-C ends the batch with what was graded written.

    Both handlers are installed here, as the trainer does for Ctrl-C: a process started in the
    background of a script inherits SIGINT ignored, and Python then leaves it ignored, so a
    stop request would otherwise be lost while a part runs on to its timeout.
    """
    reports, stopped = [], None
    signals = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {signum: signal.signal(signum, _stop_on_signal) for signum in signals}  # SIGHUP: the terminal closed
    remove_leftovers()                     # what a grader killed with SIGKILL left behind: its scratch folders
    cgroup.remove_leftovers(process_alive)  # and its parts' cgroups
    try:
        for student_dir in args.student_dirs:
            try:
                reports.append(grade(student_dir, args.parts, args.timeout, args.seed, args.memory_limit,
                                     args.unsafe_no_sandbox))
            except (UsageError, OSError) as err:  # this submission cannot be graded; the others still are
                reports.append(_failed_report(student_dir, str(err), args.parts))
            except Exception as err:  # a grader bug that one submission found: that row, never the batch
                reports.append(_failed_report(student_dir, f"the grader failed on it ({type(err).__name__}: "
                                                           f"{shown(str(err)[:200])})", args.parts))
            print_report(reports[-1])
    except KeyboardInterrupt as err:
        stopped = err.code if isinstance(err, Stopped) else 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _write_outputs(args, reports)
    if stopped:
        print(f"stopped: {len(reports)} of {len(args.student_dirs)} submissions graded; the reports written hold "
              "those only.", file=sys.stderr)
        return stopped
    return 0


def choose_parts(args):
    """(parts, where they come from): ``--handout``'s manifest, else ``--parts``, else the manifest the submissions
    carry (``handout.json``, which ``make`` writes), else every part. A ``--parts`` that differs from the handout's
    is graded as asked, with a warning; submissions whose manifests differ are refused (one of them was edited)."""
    if args.handout:
        parts = read_manifest(args.handout)
        if parts is None:
            raise UsageError(f"--handout {args.handout} holds no handout.json; pass the folder that "
                             "python -m tinyvgg.assignments make wrote.")
        if args.parts and args.parts != parts:
            raise UsageError(f"--parts {' '.join(args.parts)} and --handout {args.handout} ({' '.join(parts)}) "
                             "disagree; pass one of them.")
        return parts, f"the handout's handout.json ({args.handout})"
    carried = {}
    for student_dir in args.student_dirs:
        try:
            found = read_manifest(student_dir) if os.path.isdir(student_dir) else None
        except UsageError:
            found = ("unreadable",)
        if found is not None:
            carried.setdefault(tuple(found), []).append(student_dir)
    if args.parts:
        if carried and set(carried) != {tuple(args.parts)}:
            handed = " ".join(next(iter(carried)))
            print(f"warning: grading --parts {' '.join(args.parts)}, though the handout gave out {handed} "
                  "(its handout.json); leave out --parts to grade what was handed out.", file=sys.stderr)
        return args.parts, "--parts"
    if len(carried) > 1:
        listed = "; ".join(f"{' '.join(parts)} in {', '.join(shown(d) for d in dirs[:2])}"
                           for parts, dirs in carried.items())
        raise UsageError(f"the submissions' handout.json files disagree on the parts ({listed}); pass --handout "
                         "with the folder make wrote (or --parts).")
    if carried:
        return list(next(iter(carried))), "the handout.json the submissions carry"
    return list(PARTS), "every part (no handout.json found; pass --handout or --parts to grade fewer)"


def write_gradescope_zip(args):
    from .classroom.gradescope import write_zip
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT):
        raise UsageError(f"--timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}, "
                         f"got {args.timeout}.")
    parts = args.parts
    if args.handout:
        parts = read_manifest(args.handout)
        if parts is None:
            raise UsageError(f"--handout {args.handout} holds no handout.json; pass the folder that "
                             "python -m tinyvgg.assignments make wrote.")
    parts = parts or list(PARTS)
    out = cli.output_path(args.out, "OUT.zip", args.force)
    checkpoint.atomic_write(out, lambda f: write_zip(f, parts, args.timeout))
    print(f"wrote {out}: a Gradescope autograder for {', '.join(parts)} ({sum(PARTS[k] for k in parts)} points); "
          "upload it as the assignment's autograder (Ubuntu image)")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.assignments", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write a student version",
                        description="Write a student version: the package with the chosen parts blank under their "
                                    "hints, tests on fixed inputs, the lessons with those parts blank, a README "
                                    "listing every blank, and handout.json, which grade reads.")
    mk.add_argument("out_dir", help="a new (or empty) folder for the student version")
    mk.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), metavar="PART",
                    help=f"the parts to leave blank and grade (default: all): {', '.join(PARTS)}")
    gr = sub.add_parser("grade", help="grade one or more submissions",
                        description="Grade each part of each submission in a sandbox; every point is computed "
                                    "here. Grades the parts the handout gave out (handout.json) unless told.")
    gr.add_argument("student_dirs", nargs="+", metavar="STUDENT_DIR",
                    help="the folders the students handed in (each the whole student version)")
    gr.add_argument("--parts", nargs="+", choices=list(PARTS), metavar="PART",
                    help="grade these parts (default: those in handout.json, else all)")
    gr.add_argument("--handout", metavar="FOLDER",
                    help="the folder make wrote (or its handout.json): grade the parts it handed out, whatever the "
                         "submissions' own copies say")
    gr.add_argument("--json", help="write the full report of one submission (or a list of them) here")
    gr.add_argument("--csv", help="write one row per submission: points per part and the total")
    gr.add_argument("--force", action="store_true", help="replace an existing --json or --csv file")
    gr.add_argument("--timeout", type=float, default=60.0, help=f"seconds allowed per part (at most {MAX_TIMEOUT:g})")
    gr.add_argument("--memory-limit", type=float, default=4.0, metavar="GB",
                    help="memory allowed to the student's code per part")
    gr.add_argument("--seed", type=int, help="the inputs' seed (default: a fresh random one)")
    gr.add_argument("--unsafe-no-sandbox", action="store_true",
                    help="grade where bubblewrap cannot run (the student's code can then read this machine)")
    gs = sub.add_parser("gradescope", help="write an autograder zip for Gradescope",
                        description="Write an autograder zip to Gradescope's specification (setup.sh, "
                                    "run_autograder, results.json with one test per part). Upload it as a "
                                    "programming assignment's autograder; students upload their folder (or a zip).")
    gs.add_argument("out", metavar="OUT.zip", help="the zip to write")
    gs.add_argument("--parts", nargs="+", choices=list(PARTS), metavar="PART",
                    help="the parts to grade (default: those of --handout, else all)")
    gs.add_argument("--handout", metavar="FOLDER", help="the folder make wrote: grade the parts it handed out")
    gs.add_argument("--timeout", type=float, default=60.0, help=f"seconds allowed per part (at most {MAX_TIMEOUT:g})")
    gs.add_argument("--force", action="store_true", help="replace an existing OUT.zip")
    args = p.parse_args(argv)
    if args.command == "gradescope":
        return write_gradescope_zip(args)
    if args.command == "make":
        notebooks = make(args.out_dir, args.parts)
        print(f"wrote the student version to {args.out_dir} (parts: {', '.join(args.parts)}; "
              f"{notebooks} lesson notebooks)")
        return 0
    validate(args)
    args.parts, source = choose_parts(args)
    if isolation(args.unsafe_no_sandbox) == "unsafe":
        print(f"warning: {UNSAFE_WARNING}.", file=sys.stderr)
    print(f"grading {', '.join(args.parts)} ({sum(PARTS[k] for k in args.parts)} points), from {source}")
    return grade_all(args)


if __name__ == "__main__":
    cli.run(main)
