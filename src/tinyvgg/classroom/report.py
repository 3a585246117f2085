"""What the grader prints and writes: every piece of text that came from a submission shown escaped.

A student's exception message, its last line of output, even its folder's name could hold a
terminal escape (clear the screen, write the clipboard with OSC 52, move the cursor and
print a fake "alice: 100 / 100" line) or a line break that forges a report line. :func:`shown`
writes every control or format character (C0, DEL, C1, bidirectional overrides...) as a
visible escape such as ``\\x1b``, so the report says exactly what the code said, and nothing
it says can change how the report looks.
"""
from ..cli import shown  # noqa: F401 (the grader's reports and the CLIs escape the same way)


def brief(text, limit=300):
    """``text`` shown (:func:`shown`) and, when longer than ``limit``, its start and end around " ... ": a reason
    that names a file 2,100 folders deep stays one readable line."""
    text = shown(text)
    return text if len(text) <= limit else f"{text[:limit // 2 - 3]} ... {text[-(limit // 2 - 3):]}"


def print_report(report):
    print(f"{shown(report['submission'])}: {report['total']} / {report['max']} points")
    if report.get("error"):
        print(f"  not graded: {brief(report['error'])}")
    for part, r in report["parts"].items():
        print(f"  {part:<9} {r['points']:>3} / {r['max']:<3}")
        for reason in r["reasons"]:
            print(f"      {brief(reason, 600)}")
