# The simulated radio as the host board sees it: small JSON files in a shared
# folder (format: station/sim/air.py). Every write is temp file + rename, so a
# reader in another process sees the old file or the new one, never half.
import json
import os


def read(path):
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(obj))
    os.rename(tmp, path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def listdir(path):
    try:
        return [n for n in os.listdir(path) if n.endswith(".json")]
    except OSError:
        return []


def makedirs(path):
    cur = ""
    for part in path.split("/"):
        cur = cur + part + "/" if cur or part else "/"
        if part:
            try:
                os.mkdir(cur)
            except OSError:
                pass  # exists
