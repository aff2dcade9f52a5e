# The boot side of an update (docs/OTA.md step 6), loaded only on a boot that runs a
# set on trial or follows a rollback: the commit, the deadline, the rolled_back event.
import asyncio
import json
import os

import factory
from util import log


def _fw(dev):
    return dev.board.flash_dir.rstrip("/") + "/fw/"


async def deadline(dev):
    # New firmware that has not reached its broker in time goes back to the old set;
    # the old set reports rolled_back once connected.
    # It looks every second, so that after the commit it ends at once and this module
    # (unloaded by homemode.py) leaves the heap.
    s = dev.timing["ota_confirm_s"]
    for _ in range(s):
        await asyncio.sleep_ms(1000)
        if not dev.trial:
            return  # committed
    fw = _fw(dev)
    # The note first, whole (temp file + rename), then the trial dropped: a power cut
    # between the two boots the trial once more (commit() then drops the stale note).
    with open(fw + "rollback.tmp", "w") as f:
        f.write(json.dumps({"version": factory.FIRMWARE,
                            "reason": "new firmware did not reach its broker in %d s" % s}))
    os.rename(fw + "rollback.tmp", fw + "rollback")
    os.remove(fw + "trial")
    log("ota: firmware", factory.FIRMWARE, "did not reach its broker in", s, "s: back to the old set")
    dev.reboot()


def commit(dev):
    # The trial becomes the active set by one rename, before info says the new
    # version (the confirmation the station waits for).
    fw = _fw(dev)
    os.rename(fw + "trial", fw + "active")
    dev.trial = False
    try:  # a rollback note from an earlier boot of this trial no longer holds
        os.remove(fw + "rollback")
    except OSError:
        pass
    log("ota: firmware", factory.FIRMWARE, "committed")


def take_note(dev):
    # The reason a trial was dropped (fwboot.py, deadline), once: the event to send.
    p = _fw(dev) + "rollback"
    try:
        with open(p) as f:
            note = json.loads(f.read())
    except (OSError, ValueError):
        note = None
    try:  # gone even if unreadable, or every connection would look at it again
        os.remove(p)
    except OSError:
        pass
    if not isinstance(note, dict):
        return None
    return json.dumps({"event": "ota", "state": "rolled_back", "version": note.get("version"),
                       "reason": note.get("reason") or "rolled back"})
