"""``python -m tinyvgg.assignments``: student versions of tinyvgg, and a grader they cannot fool.

``make OUT_DIR [--parts dense relu ...]`` writes a student copy (:mod:`tinyvgg.classroom.handout`).
``grade STUDENT_DIR... [--json REPORT] [--csv GRADES]`` grades each part of each submission in a
sandboxed child process and awards every point in this one (:mod:`tinyvgg.classroom.grader`).
"""
import argparse
import csv
import io
import json
import math

from . import checkpoint, cli
from .classroom.checks import PARTS
from .classroom.grader import grade, print_report
from .classroom.handout import make
from .errors import UsageError


def _write_text(path, text):
    checkpoint.atomic_write(path, lambda f: f.write(text.encode()))


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
    gr.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per part")
    gr.add_argument("--memory-limit", type=float, default=4.0, metavar="GB",
                    help="address space allowed to the student's code per part")
    gr.add_argument("--seed", type=int, help="the inputs' seed (default: a fresh random one)")
    args = p.parse_args(argv)
    if args.command == "make":
        notebooks = make(args.out_dir, args.parts)
        print(f"wrote the student version to {args.out_dir} (parts: {', '.join(args.parts)}; "
              f"{notebooks} lesson notebooks)")
        return 0
    for flag, value in (("--timeout", args.timeout), ("--memory-limit", args.memory_limit)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a positive number, got {value}.")
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path:
            cli.output_path(path, flag, args.force)
    reports = []
    for student_dir in args.student_dirs:
        try:
            reports.append(grade(student_dir, args.parts, args.timeout, args.seed, args.memory_limit))
        except (UsageError, OSError) as err:  # this submission cannot be graded; the others still are
            reports.append({"submission": student_dir, "error": str(err), "total": 0,
                            "max": sum(PARTS[k] for k in args.parts),
                            "parts": {k: {"points": 0, "max": PARTS[k], "reasons": [], "checks": []}
                                      for k in args.parts}})
        print_report(reports[-1])
    if args.json:
        _write_text(args.json, json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    if args.csv:
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["submission", *args.parts, "total", "max", "note"])
        for r in reports:
            writer.writerow([r["submission"], *(r["parts"][k]["points"] for k in args.parts), r["total"], r["max"],
                             r.get("error", "")])
        _write_text(args.csv, rows.getvalue())
    return 0


if __name__ == "__main__":
    cli.run(main)
