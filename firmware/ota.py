# Verified firmware update (docs/OTA.md, "On the device"), steps 1-4: imported only
# when an `ota` command runs, so a running device does not carry it.
#
# Plain HTTP/1.0 GETs over net.connect (the board's view of the network), the
# manifest hashed as it arrives and trusted only if it matches the command's sha256,
# each file streamed in 512 B chunks into the inactive set (/fw/a or /fw/b under
# flash_dir) and hashed as it goes, never a whole file in RAM; then every written
# file re-read and hashed from flash, then /fw/trial written (temp file + rename).
# A file download cut on the way resumes with Range: bytes=N- (the BundleServer's 206).
import asyncio
import binascii
import gc
import hashlib
import json
import os

import net
from util import exists, log

CHUNK = 512  # 1 KB chunks took the free block the MQTT session then needed (96 KB heap)
MANIFEST_MAX = 4096
URL_MAX = 200
_HEX = "0123456789abcdef"
_TAG = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ."


class Failed(Exception):
    pass


class Cut(Failed):
    # The connection ended early: a file download resumes from where it was.
    pass


RESUMES = 5  # cuts of one file's download before the update gives up


# --- the command's fields (station/commands.py checks the same) -------------------


def check(doc):
    # None if the command's fields are good, else what is wrong with them.
    url, digest, version = doc.get("url"), doc.get("sha256"), doc.get("version")
    if not isinstance(url, str) or len(url) > URL_MAX or _split(url) is None:
        return "url must be http://host[:port]/path, at most %d characters" % URL_MAX
    if not is_sha256(digest):
        return "sha256 must be 64 lower-case hex digits"
    if not is_version(version):
        return "version must be dotted numbers such as 1.1.0"
    return None


def is_sha256(s):
    return isinstance(s, str) and len(s) == 64 and all(c in _HEX for c in s)


def is_version(v):
    # station/sim/firmware.py _VERSION: \d{1,4}(\.\d{1,4}){1,3}([-+][0-9A-Za-z.]{1,20})?
    if not isinstance(v, str):
        return False
    cut = len(v)
    for sep in "-+":
        i = v.find(sep)
        if 0 <= i < cut:
            cut = i
    nums, tag = v[:cut], v[cut + 1:]
    if cut < len(v) and not (1 <= len(tag) <= 20 and all(c in _TAG for c in tag)):
        return False
    parts = nums.split(".")
    return 2 <= len(parts) <= 4 and all(1 <= len(p) <= 4 and p.isdigit() for p in parts)


def _split(url):
    # (host, port, path) of an http:// URL, or None.
    if not url.startswith("http://"):
        return None
    for c in url:
        if c <= " " or c > "~":
            return None
    rest = url[7:]
    i = rest.find("/")
    if i <= 0:
        return None
    hostport, path = rest[:i], rest[i:]
    host, port = hostport, 80
    if ":" in hostport:
        host, p = hostport.rsplit(":", 1)
        if not p.isdigit() or not 0 < int(p) < 65536:
            return None
        port = int(p)
    if not host:
        return None
    return host, port, path


# --- HTTP ----------------------------------------------------------------------


async def _get(dev, host, port, path, start=0):
    # (stream, Content-Length, resumed) of the answer to GET path, from byte `start`
    # (Range: bytes=start-) when start: resumed for a 206, not for a 200 (a server
    # that ignores Range sends the whole file again). The caller closes the stream.
    t = dev.timing
    stream = await net.connect(dev.board, host, port, t["probe_ms"])
    try:
        stream.write(("GET %s HTTP/1.0\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (
            path, host, "Range: bytes=%d-\r\n" % start if start else "")).encode())
        await asyncio.wait_for_ms(stream.drain(), t["ota_read_ms"])
        status = await _line(stream, t)
        code = status[9:12]
        if status[:5] != b"HTTP/" or not (code == b"200" or start and code == b"206"):
            raise Failed("%s: HTTP %s" % (path, status.decode().strip()))
        length = None
        for _ in range(32):
            line = await _line(stream, t)
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        else:
            raise Failed("%s: too many header lines" % path)
        if length is None:
            raise Failed("%s: no Content-Length" % path)
        return stream, length, code == b"206"
    except BaseException:
        await net.close(stream)
        raise


async def _line(stream, t):
    line = await asyncio.wait_for_ms(stream.readline(), t["ota_read_ms"])
    if not line:
        raise Cut("connection closed early")
    if len(line) > 512:
        raise Failed("bad HTTP answer")
    return line


async def _read_into(stream, mv, t):
    n = await asyncio.wait_for_ms(stream.readinto(mv), t["ota_read_ms"])
    if not n:
        raise Cut("connection closed early")
    return n


# --- flash -----------------------------------------------------------------------



def _mkdir(p):
    if not exists(p):
        os.mkdir(p)


def _rmtree(p):
    for entry in list(os.ilistdir(p)):
        q = p + "/" + entry[0]
        if entry[1] == 0x4000:
            _rmtree(q)
            os.rmdir(q)
        else:
            os.remove(q)


def _root(dev):
    d = dev.board.flash_dir
    return d[:-1] if d.endswith("/") else d


def active_set(root):
    # "a", "b" or None (the factory set at /), from /fw/active (fwboot.py's format).
    try:
        with open(root + "/fw/active") as f:
            doc = json.loads(f.read())
        return doc["set"] if doc["set"] in ("a", "b") else None
    except Exception:
        return None


def _free(root):
    try:
        st = os.statvfs(root or "/")
    except (AttributeError, OSError):
        return None
    return st[0] * st[4]


def _good_path(p):
    if not isinstance(p, str) or not p or len(p) > 64 or p[0] == "/" or p.endswith("/"):
        return False
    for part in p.split("/"):
        if not part or part in (".", ".."):
            return False
    return all(c in _TAG or c in "_-/" for c in p)


def _entries(fh, version, out):
    # Checks the manifest and writes its files to `out`, one "sha256 size path" line
    # each (the index the download and the check read back line by line: a list of
    # 22 entries held through the download was ~4 KB of a 96 KB heap, and the MQTT
    # session then ran out of blocks). (count, total size).
    try:
        doc = json.load(fh)
    except ValueError:
        raise Failed("manifest is not JSON")
    if not isinstance(doc, dict) or doc.get("format") != 1 or not isinstance(doc.get("files"), list):
        raise Failed("manifest is not a format-1 manifest")
    if doc.get("version") != version:
        raise Failed("manifest is for version %s, not %s" % (doc.get("version"), version))
    count = total = 0
    for e in doc["files"]:
        if not isinstance(e, dict) or not _good_path(e.get("path")) or not is_sha256(e.get("sha256")):
            raise Failed("manifest has a bad file entry")
        size = e.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Failed("manifest has a bad size for " + e["path"])
        out.write("%s %d %s\n" % (e["sha256"], size, e["path"]))
        count += 1
        total += size
    if not count:
        raise Failed("manifest lists no files")
    return count, total


def _index(p):
    # (path, size, sha256) of each line _entries wrote, one at a time.
    with open(p) as fh:
        while True:
            line = fh.readline()
            if not line:
                return
            digest, size, rel = line.rstrip("\n").split(" ", 2)
            yield rel, int(size), digest


# --- the update ------------------------------------------------------------------


async def start(mode, doc):
    # The ota command, for homemode.HomeMode `mode`: the update, its events, then the
    # reboot into the trial (or, after a failure, the heap given back).
    import sys

    version = doc["version"]

    async def say(state, reason):
        msg = {"event": "ota", "state": state, "version": version}  # type: dict
        if reason:
            msg["reason"] = reason
        await mode._publish_quietly(mode.t_event, json.dumps(msg))

    try:
        done = await run(mode.dev, doc, say)
    finally:
        mode.updating = False
    sys.modules.pop("ota", None)  # the device keeps running: give its heap back
    gc.collect()
    if done:
        await mode._leave(False)  # into the new set (the trial)


async def run(dev, doc, say):
    # say(state, reason): an awaitable publishing the ota event. True once the new
    # set is on trial and the device should reboot; False after a `failed`.
    try:
        await _run(dev, doc, say)
        return True
    except Exception as e:
        why = str(e) if isinstance(e, Failed) else type(e).__name__ + (" " + str(e) if str(e) else "")
        log("ota: failed:", why)
        await say("failed", why)
        return False
    finally:
        gc.collect()


async def _run(dev, doc, say):
    host, port, path = _split(doc["url"])
    base = path[:path.rfind("/") + 1]
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    t = dev.timing
    await say("downloading", "")
    # 1. the manifest, hashed as it arrives; kept on flash, not in one RAM block
    # (json.load reads it from the file piece by piece)
    root = _root(dev)
    _mkdir(root + "/fw")
    mpath = root + "/fw/manifest.tmp"
    stream, length, _ = await _get(dev, host, port, path)
    try:
        if length > MANIFEST_MAX:
            raise Failed("manifest too large (%d bytes)" % length)
        h = hashlib.sha256()
        got = 0
        with open(mpath, "wb") as fh:
            while got < length:
                n = await _read_into(stream, mv[:min(CHUNK, length - got)], t)
                fh.write(mv[:n])
                h.update(mv[:n])
                got += n
    finally:
        await net.close(stream)
    if binascii.hexlify(h.digest()).decode() != doc["sha256"]:
        os.remove(mpath)
        raise Failed("manifest hash mismatch")
    ipath = root + "/fw/files.tmp"
    try:
        with open(mpath) as fh, open(ipath, "w") as out:
            count, total = _entries(fh, doc["version"], out)
        os.remove(mpath)
        gc.collect()
        await _install(dev, doc, say, host, port, base, root, ipath, count, total, buf, mv)
    finally:
        for p in (mpath, ipath):
            if exists(p):
                os.remove(p)


async def _install(dev, doc, say, host, port, base, root, ipath, count, total, buf, mv):
    # 2. the inactive set, emptied, then each file streamed into it
    name = "b" if active_set(root) == "a" else "a"
    folder = root + "/fw/" + name
    if exists(folder):
        _rmtree(folder)
    else:
        os.mkdir(folder)
    free = _free(root)
    if free is not None and total + 4096 > free:
        raise Failed("not enough flash: %d bytes needed, %d free" % (total, free))
    log("ota: downloading", count, "files,", total, "bytes into", folder)
    for rel, size, digest in _index(ipath):
        await _fetch(dev, host, port, base + rel, folder, rel, size, digest, mv)
        gc.collect()
    # 3. what is on flash is what boots
    await say("verifying", "")
    for rel, size, digest in _index(ipath):
        h = hashlib.sha256()
        n = 0
        with open(folder + "/" + rel, "rb") as fh:
            while True:
                k = fh.readinto(buf)
                if not k:
                    break
                h.update(mv[:k])
                n += k
        if n != size or binascii.hexlify(h.digest()).decode() != digest:
            raise Failed(rel + ": differs on flash after writing")
        await asyncio.sleep_ms(0)
    # 4. the trial, written atomically
    tmp = root + "/fw/trial.tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps({"set": name, "boots": 0, "version": doc["version"]}))
    os.rename(tmp, root + "/fw/trial")
    log("ota: firmware", doc["version"], "on trial in", folder)
    await say("rebooting", "")


async def _fetch(dev, host, port, path, folder, rel, size, digest, mv):
    # One file streamed to flash and hashed as it comes. A connection that ends early
    # (a WiFi drop) is resumed with Range from the bytes already written, the hash
    # carried on, rather than the file started over.
    i = rel.rfind("/")
    if i > 0:  # a sub-folder (board/...)
        d = folder
        for part in rel[:i].split("/"):
            d += "/" + part
            _mkdir(d)
    h = hashlib.sha256()
    got = cuts = 0
    with open(folder + "/" + rel, "wb") as fh:
        while True:
            try:
                stream, length, resumed = await _get(dev, host, port, path, got)
                try:
                    if got and not resumed:  # the whole file again
                        fh.seek(0)
                        h = hashlib.sha256()
                        got = 0
                    if got + length != size:
                        raise Failed("%s: size %d, the manifest says %d" % (rel, got + length, size))
                    while got < size:
                        n = await _read_into(stream, mv[:min(CHUNK, size - got)], dev.timing)
                        fh.write(mv[:n])
                        h.update(mv[:n])
                        got += n
                finally:
                    await net.close(stream)
                break
            except (Cut, OSError, asyncio.TimeoutError) as e:  # a reset, a stall, no network
                cuts += 1
                if cuts > RESUMES:
                    raise Failed("%s: download cut %d times (%s)" % (rel, cuts, e))
                log("ota: resuming", rel, "at", got)
                await asyncio.sleep_ms(250 * cuts)
    if binascii.hexlify(h.digest()).decode() != digest:
        raise Failed(rel + ": hash mismatch")
