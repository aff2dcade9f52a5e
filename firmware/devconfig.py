# The stored configuration: one small JSON file on the board's flash.
#
# {"wifi": {"ssid", "password"},
#  "mqtt": {"broker", "port", "topic_prefix", "node_name", "username", "password",
#           "tls": true, "ca_id": "<16 hex>"},   # TLS: the CA's DER is in ca-<ca_id>.der
#  "interval": 10,        # set_interval command, survives a reboot
#  "proven": true}        # this wifi+mqtt config has reached the broker at least once
#
# Written as temp file + rename so a power cut leaves the old or the new file,
# never half of one. A TLS broker's CA certificate (up to ~3 KB of DER) lives in a
# file of its own, named after its hash and written before config.json points at
# it: the config in RAM stays small, and whichever config.json survives a power
# cut or a failed write finds its own CA.
import binascii
import hashlib
import json
import os

import validate

NAME = "config.json"


class Store:
    def __init__(self, folder):
        folder = folder.rstrip("/")
        self.folder = folder
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
                return _clean(cfg, self)
        return {}

    # --- the CA certificate of a TLS broker ----------------------------------

    def _ca_path(self, ca_id):
        return self.folder + "/ca-" + ca_id + ".der"

    def save_ca(self, der):
        # -> ca_id. Written (temp + rename) before any config.json refers to it.
        ca_id = binascii.hexlify(hashlib.sha256(der).digest()[:8]).decode()
        path = self._ca_path(ca_id)
        if self.ca(ca_id) != der:
            with open(path + ".tmp", "wb") as f:
                f.write(der)
            try:
                os.rename(path + ".tmp", path)
            except OSError:
                os.remove(path)
                os.rename(path + ".tmp", path)
        return ca_id

    def ca(self, ca_id):
        # The DER bytes, or None if the file is missing or not what its name says.
        try:
            with open(self._ca_path(ca_id), "rb") as f:
                der = f.read()
        except OSError:
            return None
        if binascii.hexlify(hashlib.sha256(der).digest()[:8]).decode() != ca_id:
            return None
        return der

    def drop_other_cas(self, keep):
        # CA files no config refers to any more (keep: the ca_id in use, or None).
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        for name in names:
            if name.startswith("ca-") and name != "ca-%s.der" % keep:
                try:
                    os.remove(self.folder + "/" + name)
                except OSError:
                    pass

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
        self.drop_other_cas(None)


def _stored_mqtt(section, store):
    # The stored form: the CA is named by "ca_id" (its file), not given as PEM.
    section = dict(section)
    tls = section.pop("tls", None)
    ca_id = section.pop("ca_id", None)
    section.pop("ca", None)
    out = validate.mqtt(section)
    if tls is True:
        if not isinstance(ca_id, str) or store.ca(ca_id) is None:
            raise validate.Invalid("ca", "the stored CA certificate is missing")
        out["tls"] = True
        out["ca_id"] = ca_id
    return out


def _clean(cfg, store):
    # A stored section that no longer validates (hand edit, older firmware, a lost
    # CA file) is dropped, so the device falls back to setup mode instead of crashing.
    out = {}
    section = cfg.get("wifi")
    if isinstance(section, dict):
        try:
            out["wifi"] = validate.wifi(section)
        except validate.Invalid:
            pass
    section = cfg.get("mqtt")
    if isinstance(section, dict):
        try:
            out["mqtt"] = _stored_mqtt(section, store)
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
