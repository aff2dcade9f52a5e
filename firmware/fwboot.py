# Which firmware set boots (docs/OTA.md, step 5). main.py imports it before app, so
# the chosen set's modules come first on sys.path: a set on trial (/fw/trial, its
# boot counted; past 2 boots it is dropped, the reason kept in /fw/rollback), else
# the active set (/fw/active), else the factory set at /. Paths are relative to the
# current folder, the flash root (the host board's launcher runs in the flash folder).
# Whatever goes wrong here, the factory set boots.
import json
import os
import sys

MAX_TRIAL_BOOTS = 2


def read(p):
    try:
        with open(p) as f:
            doc = json.loads(f.read())
    except Exception:
        return None
    return doc if isinstance(doc, dict) and doc.get("set") in ("a", "b") else None


def write(p, doc):
    with open(p + ".tmp", "w") as f:
        f.write(json.dumps(doc))
    os.rename(p + ".tmp", p)


def _choose():
    t = read("fw/trial")
    name = None
    if t is not None:
        boots = t.get("boots")
        boots = (boots if isinstance(boots, int) else 0) + 1
        if boots > MAX_TRIAL_BOOTS:  # a crash at boot, a reset loop
            # The note first: a power cut between the two leaves the trial, dropped
            # again on the next boot, rather than a rollback nobody reports.
            write("fw/rollback", {"set": t["set"], "version": t.get("version"),
                                  "reason": "crashed at boot (%d boots)" % (boots - 1)})
            os.remove("fw/trial")
        else:
            t["boots"] = boots
            write("fw/trial", t)
            name = t["set"]
    if name is None:
        a = read("fw/active")
        if a is not None:
            name = a["set"]
    if name is not None:
        sys.path.insert(0, os.getcwd().rstrip("/") + "/fw/" + name)


try:
    _choose()
except Exception as e:
    sys.print_exception(e)
# Nothing of it stays in RAM (main.py imports it with __import__, binding no name);
# the app learns of a trial from /fw/trial itself (app.py).
sys.modules.pop("fwboot", None)
