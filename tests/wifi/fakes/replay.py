"""A fake command for tests: replays recorded output, checking the exact argv of each call.

Copied into a temporary bin directory under the tool's name (nmcli, netsh, ...). Its plan
(`<tool>.plan.json` next to it) lists the calls expected, in order, each with the exact argv
and the recorded stdout/stderr/exit code (and optionally a sleep, to model a hang). Every
call is appended to `<tool>.log`; an argv that differs from the plan is written to
`<tool>.mismatch` and answered with exit code 98, so the test fails on it.
"""

import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.basename(sys.argv[0])
PLAN = os.path.join(HERE, TOOL + ".plan.json")


def matches(expected: list, got: list) -> bool:
    """Exact, except items written "re:<pattern>" (for temporary file names)."""
    if len(expected) != len(got):
        return False
    for e, g in zip(expected, got, strict=True):
        if e.startswith("re:") and re.fullmatch(e[3:], g):
            continue
        if e != g:
            return False
    return True


def main() -> int:
    with open(PLAN, encoding="utf-8") as f:
        plan = json.load(f)
    argv = sys.argv[1:]
    entry: dict = {"argv": argv}
    for name in plan.get("capture_env", []):
        entry.setdefault("env", {})[name] = os.environ.get(name)
    for a in argv:  # netsh add profile: keep the XML, the backend deletes the file at once
        if a.startswith("filename=") and os.path.exists(a[len("filename=") :]):
            with open(a[len("filename=") :], encoding="utf-8") as f:
                entry["file"] = f.read()
    with open(os.path.join(HERE, TOOL + ".log"), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    i = plan["next"]
    if i >= len(plan["calls"]):
        with open(os.path.join(HERE, TOOL + ".mismatch"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"expected": None, "got": argv}) + "\n")
        sys.stderr.write(f"fake {TOOL}: unexpected extra call {argv!r}\n")
        return 97
    exp = plan["calls"][i]
    plan["next"] = i + 1
    with open(PLAN, "w", encoding="utf-8") as f:
        json.dump(plan, f)
    if not matches(exp["argv"], argv):
        with open(os.path.join(HERE, TOOL + ".mismatch"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"expected": exp["argv"], "got": argv}) + "\n")
        sys.stderr.write(f"fake {TOOL}: expected {exp['argv']!r}, got {argv!r}\n")
        return 98
    time.sleep(exp.get("sleep", 0))
    sys.stdout.buffer.write(exp.get("stdout", "").encode("utf-8"))
    sys.stdout.flush()
    sys.stderr.buffer.write(exp.get("stderr", "").encode("utf-8"))
    return int(exp.get("rc", 0))


sys.exit(main())
