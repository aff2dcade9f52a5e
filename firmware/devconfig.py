# The stored configuration: one small JSON file on the board's flash.
#
# {"wifi": {"ssid", "password"},
#  "mqtt": {"broker", "port", "topic_prefix", "node_name", "username", "password"},
#  "interval": 10,        # set_interval command, survives a reboot
#  "proven": true}        # this wifi+mqtt config has reached the broker at least once
#
# Written as temp file + rename so a power cut leaves the old or the new file,
# never half of one.
import json
import os

import validate

NAME = "config.json"


class Store:
    def __init__(self, folder):
        folder = folder.rstrip("/")
        self.path = folder + "/" + NAME
        self.tmp = self.path + ".tmp"

    def load(self):
        for path in (self.path, self.tmp):
            try:
                with open(path) as f:
                    cfg = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(cfg, dict):
                return _clean(cfg)
        return {}

    def save(self, cfg):
        with open(self.tmp, "w") as f:
            f.write(json.dumps(cfg))
        try:
            os.rename(self.tmp, self.path)  # atomic replace on LittleFS and POSIX
        except OSError:
            # FAT refuses to rename over an existing file; load() falls back to
            # the complete .tmp if the power goes between these two calls.
            os.remove(self.path)
            os.rename(self.tmp, self.path)

    def erase(self):
        for path in (self.path, self.tmp):
            try:
                os.remove(path)
            except OSError:
                pass


def _clean(cfg):
    # A stored section that no longer validates (hand edit, older firmware) is
    # dropped, so the device falls back to setup mode instead of crashing.
    out = {}
    for key, check in (("wifi", validate.wifi), ("mqtt", validate.mqtt)):
        section = cfg.get(key)
        if isinstance(section, dict):
            try:
                out[key] = check(section)
            except validate.Invalid:
                pass
    interval = cfg.get("interval")
    if validate.is_interval(interval):
        out["interval"] = interval
    if cfg.get("proven") is True:
        out["proven"] = True
    return out


def configured(cfg):
    # Both halves are needed to run; wifi alone cannot reach a broker.
    return "wifi" in cfg and "mqtt" in cfg
