"""``python -m tinyvgg.assignments``: student versions of tinyvgg, and a grader they cannot fool.

``make OUT_DIR [--parts dense relu ...]`` writes a student copy (:mod:`tinyvgg.classroom.handout`).
``grade STUDENT_DIR... [--json REPORT] [--csv GRADES]`` grades each part of each submission in a
bubblewrap sandbox and awards every point in this process (:mod:`tinyvgg.classroom.grader`).
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
from .classroom.checks import PARTS
from .classroom.grader import UNSAFE_WARNING, grade, isolation, print_report
from .classroom.handout import make
from .classroom.report import shown
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
    repeated = sorted({p for p in args.parts if args.parts.count(p) > 1})
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
    return {"submission": student_dir, "error": error, "total": 0, "max": sum(PARTS[k] for k in parts),
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


def _stop_on_signal(signum, frame):
    raise KeyboardInterrupt  # handled like Ctrl-C: the running part is killed, what was graded is written


def grade_all(args):
    """Grade every submission; a SIGTERM or Ctrl-C ends the batch with what was graded written.

    Both handlers are installed here, as the trainer does for Ctrl-C: a process started in the
    background of a script inherits SIGINT ignored, and Python then leaves it ignored, so a
    stop request would otherwise be lost while a part runs on to its timeout.
    """
    reports, stopped = [], False
    previous = {signum: signal.signal(signum, _stop_on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for student_dir in args.student_dirs:
            try:
                reports.append(grade(student_dir, args.parts, args.timeout, args.seed, args.memory_limit,
                                     args.unsafe_no_sandbox))
            except (UsageError, OSError) as err:  # this submission cannot be graded; the others still are
                reports.append(_failed_report(student_dir, str(err), args.parts))
            print_report(reports[-1])
    except KeyboardInterrupt:
        stopped = True
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _write_outputs(args, reports)
    if stopped:
        print(f"stopped: {len(reports)} of {len(args.student_dirs)} submissions graded; the reports written hold "
              "those only.", file=sys.stderr)
        return 130
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.assignments", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write a student version")
    mk.add_argument("out_dir")
    mk.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    gr = sub.add_parser("grade", help="grade one or more submissions")
    gr.add_argument("student_dirs", nargs="+", metavar="STUDENT_DIR")
    gr.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    gr.add_argument("--json", help="write the full report of one submission (or a list of them) here")
    gr.add_argument("--csv", help="write one row per submission: points per part and the total")
    gr.add_argument("--force", action="store_true", help="replace an existing --json or --csv file")
    gr.add_argument("--timeout", type=float, default=60.0, help=f"seconds allowed per part (at most {MAX_TIMEOUT:g})")
    gr.add_argument("--memory-limit", type=float, default=4.0, metavar="GB",
                    help="memory allowed to the student's code per part")
    gr.add_argument("--seed", type=int, help="the inputs' seed (default: a fresh random one)")
    gr.add_argument("--unsafe-no-sandbox", action="store_true",
                    help="grade where bubblewrap cannot run (the student's code can then read this machine)")
    args = p.parse_args(argv)
    if args.command == "make":
        notebooks = make(args.out_dir, args.parts)
        print(f"wrote the student version to {args.out_dir} (parts: {', '.join(args.parts)}; "
              f"{notebooks} lesson notebooks)")
        return 0
    validate(args)
    if isolation(args.unsafe_no_sandbox) == "unsafe":
        print(f"warning: {UNSAFE_WARNING}.", file=sys.stderr)
    return grade_all(args)


if __name__ == "__main__":
    cli.run(main)
