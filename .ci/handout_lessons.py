"""CI: each lesson runs in the student version once the parts before it are solved.

For lesson k, make a student version whose blanks are the parts of the lessons *after* k (so the parts
up to k are "solved": the reference solutions stay in), and run lesson k there with nbmake, importing
that copy's tinyvgg. The exercises are blank in every student version, so this also checks that an
unanswered exercise lets its lesson run to the end.
"""
import os
import subprocess
import sys
import tempfile
import time

from tinyvgg.classroom import handout

# the parts each lesson introduces (lessons/README.md, "In the student version")
LESSON_PARTS = [("01", []), ("02", ["dense"]), ("03", ["softmax"]), ("04", ["relu", "dropout"]),
                ("05", ["im2col", "conv"]), ("06", ["pool"]), ("07", ["sgd"]), ("08", []), ("09", []),
                ("10", ["batchnorm"]), ("11", []), ("12", [])]
assert sorted(p for _, parts in LESSON_PARTS for p in parts) == sorted(handout.PARTS)

failed = []
with tempfile.TemporaryDirectory(prefix="tinyvgg-handout-") as scratch:
    for k, (number, _) in enumerate(LESSON_PARTS):
        later = [p for _, parts in LESSON_PARTS[k + 1:] for p in parts]
        folder = os.path.join(scratch, f"upto-{number}")
        handout.make(folder, later)
        lesson = next(n for n in sorted(os.listdir(os.path.join(folder, "lessons"))) if n.startswith(number + "_"))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                                 os.path.join("lessons", lesson)], cwd=folder, capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=os.path.join(folder, "src")))
        seconds = time.perf_counter() - start
        status = "ok" if result.returncode == 0 else "FAILED"
        print(f"{lesson:45s} blanks: {', '.join(later) or 'exercises only':45s} {status} in {seconds:.0f} s",
              flush=True)
        if result.returncode:
            print(result.stdout[-3000:], result.stderr[-2000:])
            failed.append(lesson)
sys.exit(1 if failed else 0)
