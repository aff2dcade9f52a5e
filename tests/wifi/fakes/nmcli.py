"""A fake `nmcli` that models the part of NetworkManager the station uses.

State (connections, visible access points, the active connection) lives in the JSON file
named by $FAKE_NM_STATE, so it survives across calls, and across a crash of the station.
Each argv is checked against the grammar the real nmcli accepts for these commands (exact
--fields sets, `save no`, property names); anything else is answered as an error and
recorded under "rejected". Messages and exit codes are those of real nmcli 1.4x runs:
  (7) Secrets were required, but not provided.      -> exit 4
  (53) The Wi-Fi network could not be found.         -> exit 4
  Timeout expired (N seconds)                        -> exit 3
  unknown connection 'X'                             -> exit 10
"""

import json
import os
import sys
import time
import uuid as uuidlib

STATE = os.environ["FAKE_NM_STATE"]
HINT = "Hint: use 'journalctl -xe NM_CONNECTION={u} + NM_DEVICE={d}' to get more details.\n"


def load() -> dict:
    with open(STATE, encoding="utf-8") as f:
        return json.load(f)


def save(st: dict) -> None:
    tmp = STATE + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(st, f, ensure_ascii=False)
    os.replace(tmp, STATE)


def esc(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace(":", "\\:")


def row(*vals: object) -> str:
    return ":".join(esc(v) for v in vals)


class Exit(Exception):
    def __init__(self, rc: int, out: str = "", err: str = ""):
        self.rc, self.out, self.err = rc, out, err


def reject(st: dict, argv: list, why: str) -> Exit:
    st["rejected"].append({"argv": argv, "why": why})
    save(st)
    return Exit(2, err=f"Error: fake nmcli rejects this call: {why}\n")


def find_conn(st: dict, how: str, key: str) -> dict | None:
    field = {"id": "name", "uuid": "uuid"}[how]
    return next((c for c in st["connections"] if c[field] == key), None)


def visible_ap(st: dict, conn: dict) -> dict | None:
    for ap in st["aps"]:
        if ap["ssid"] == conn["ssid"] and (
            not conn.get("bssid") or conn["bssid"] == ap["bssid"].lower()
        ):
            return ap
    return None


def activate(st: dict, conn: dict, wait: int) -> Exit:
    dev = st["device"]
    ap = visible_ap(st, conn)
    hint = HINT.format(u=conn["uuid"], d=dev)
    if st.get("activation_delay", 0) > wait:
        time.sleep(wait)
        return Exit(3, err=f"Error: Timeout expired ({wait} seconds)\n")
    time.sleep(st.get("activation_delay", 0))
    if ap is None:
        msg = "Error: Connection activation failed: (53) The Wi-Fi network could not be found.\n"
        return Exit(4, err=msg + hint)
    if (ap.get("psk") or None) != (conn.get("psk") or None):
        out = (
            f"Passwords or encryption keys are required to access the wireless network "
            f"'{conn['ssid']}'.\nWarning: password for '802-11-wireless-security.psk' not given "
            "in 'passwd-file' and nmcli cannot ask without '--ask' option.\n"
        )
        msg = "Error: Connection activation failed: (7) Secrets were required, but not provided.\n"
        return Exit(4, out=out, err=msg + hint)
    st["active"] = conn["uuid"]
    st["activations"] += 1
    save(st)
    n = st["activations"]
    return Exit(
        0,
        out="Connection successfully activated (D-Bus active path: "
        f"/org/freedesktop/NetworkManager/ActiveConnection/{n})\n",
    )


def run(st: dict, argv: list) -> Exit:
    args = list(argv)
    opts: dict = {}
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "--terse":
            opts["terse"] = True
        elif opt in ("--escape", "--fields", "--wait"):
            if not args:
                raise reject(st, argv, f"{opt} needs a value")
            opts[opt] = args.pop(0)
        else:
            return Exit(2, err=f"Error: Option '{opt}' is unknown, try 'nmcli -help'.\n")
    fields = opts.get("--fields")
    terse_ok = opts.get("terse") and opts.get("--escape") == "yes"
    dev = st["device"]
    active = next((c for c in st["connections"] if c["uuid"] == st["active"]), None)

    def need(expected_fields: str) -> None:
        if not terse_ok or fields != expected_fields:
            raise reject(st, argv, f"want --terse --escape yes --fields {expected_fields}")

    if args == ["general"]:
        need("RUNNING")
        return Exit(0, out=st["running"] + "\n")
    if args == ["device", "status"]:
        need("DEVICE,TYPE,STATE,CONNECTION")
        lines = [
            row(
                dev,
                "wifi",
                "connected" if active else "disconnected",
                active["name"] if active else "",
            ),
            row("p2p-dev-" + dev, "wifi-p2p", "disconnected", ""),
            row("lo", "loopback", "unmanaged", ""),
        ]
        return Exit(0, out="\n".join(lines) + "\n")
    if args == ["connection", "show", "--active"]:
        need("NAME,UUID,TYPE,DEVICE")
        out = row(active["name"], active["uuid"], "802-11-wireless", dev) + "\n" if active else ""
        return Exit(0, out=out)
    if args == ["connection", "show"]:
        need("NAME,UUID")
        return Exit(0, out="".join(row(c["name"], c["uuid"]) + "\n" for c in st["connections"]))
    if args[:4] == ["device", "wifi", "list", "--rescan"] and args[5:] == ["ifname", dev]:
        if args[4] not in ("yes", "no"):
            raise reject(st, argv, "--rescan yes|no")
        act_ap = visible_ap(st, active) if active else None
        if fields == "ACTIVE,SSID,BSSID" and terse_ok:
            return Exit(
                0,
                out="".join(
                    row("yes" if ap is act_ap else "no", ap["ssid"], ap["bssid"]) + "\n"
                    for ap in st["aps"]
                ),
            )
        need("SSID,BSSID,SIGNAL,SECURITY,FREQ")
        return Exit(
            0,
            out="".join(
                row(ap["ssid"], ap["bssid"], ap["signal"], ap["security"], f"{ap['freq']} MHz")
                + "\n"
                for ap in st["aps"]
            ),
        )
    if args == ["device", "show", dev]:
        need("IP4.GATEWAY")
        ap = visible_ap(st, active) if active else None
        return Exit(0, out=row("IP4.GATEWAY", ap["gateway"] if ap else "") + "\n")
    if args[:2] == ["connection", "add"]:
        return add(st, argv, args[2:])
    if args[:2] == ["connection", "up"] and len(args) in (4, 6):
        if "--wait" not in opts or not opts["--wait"].isdigit():
            raise reject(st, argv, "connection up without --wait N")
        if args[2] not in ("id", "uuid") or (len(args) == 6 and args[4:] != ["ifname", dev]):
            raise reject(st, argv, "connection up id|uuid X [ifname DEV]")
        conn = find_conn(st, args[2], args[3])
        if conn is None:
            return Exit(10, err=f"Error: unknown connection '{args[3]}'.\n")
        return activate(st, conn, int(opts["--wait"]))
    if args == ["device", "connect", dev]:
        for conn in st["connections"]:
            if conn.get("saved") and visible_ap(st, conn):
                r = activate(st, conn, int(opts.get("--wait", "90")))
                if r.rc == 0:
                    return Exit(
                        0, out=f"Device '{dev}' successfully activated with '{conn['uuid']}'.\n"
                    )
                return r
        return Exit(4, err="Error: Connection activation failed: No suitable connection found.\n")
    if args[:2] == ["connection", "delete"] and len(args) == 4 and args[2] in ("id", "uuid"):
        conn = find_conn(st, args[2], args[3])
        if conn is None:
            return Exit(
                10,
                err=f"Error: unknown connection '{args[3]}'.\n"
                f"Error: cannot delete unknown connection(s): {args[2]} '{args[3]}'.\n",
            )
        st["connections"].remove(conn)
        if st["active"] == conn["uuid"]:
            st["active"] = None
        save(st)
        return Exit(0, out=f"Connection '{conn['name']}' ({conn['uuid']}) successfully deleted.\n")
    raise reject(st, argv, "command not modelled")


ADD_PROPS = {
    "connection.autoconnect",
    "ipv6.method",
    "802-11-wireless.bssid",
    "wifi-sec.key-mgmt",
    "wifi-sec.psk",
}


def add(st: dict, argv: list, rest: list) -> Exit:
    head = rest[:10]
    if (
        len(head) < 10
        or head[0:2] != ["save", "no"]
        or head[2:4] != ["type", "wifi"]
        or head[4] != "ifname"
        or head[6] != "con-name"
        or head[8] != "ssid"
    ):
        raise reject(st, argv, "want: connection add save no type wifi ifname D con-name N ssid S")
    props = rest[10:]
    if len(props) % 2:
        raise reject(st, argv, "property without value")
    p = dict(zip(props[::2], props[1::2], strict=True))
    if not set(p) <= ADD_PROPS:
        raise reject(st, argv, f"unexpected properties {sorted(set(p) - ADD_PROPS)}")
    name = head[7]
    if "wifi-sec.psk" in p:
        if p.get("wifi-sec.key-mgmt") != "wpa-psk":
            return Exit(2, err="Error: 802-11-wireless-security.key-mgmt: property is missing.\n")
        if not 8 <= len(p["wifi-sec.psk"].encode()) <= 63:
            return Exit(
                2,
                err=f"Error: Failed to add '{name}' connection: "
                "802-11-wireless-security.psk: property is invalid\n",
            )
    conn = {
        "name": name,
        "uuid": str(uuidlib.uuid4()),
        "ssid": head[9],
        "saved": False,
        "psk": p.get("wifi-sec.psk"),
        "bssid": p.get("802-11-wireless.bssid", "").lower() or None,
        "props": p,
        "ifname": head[5],
    }
    st["connections"].append(conn)
    save(st)
    return Exit(0, out=f"Connection '{name}' ({conn['uuid']}) successfully added.\n")


def mark(what: str, argv: list) -> None:
    """Append-only record of when each call starts and ends (one write each, O_APPEND), so a
    test can see whether two nmcli calls ever ran at the same time."""
    line = json.dumps({"what": what, "pid": os.getpid(), "argv": argv}) + "\n"
    fd = os.open(STATE + ".calls", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def main() -> int:
    argv = sys.argv[1:]
    mark("begin", argv)
    try:
        return serve(argv)
    finally:
        mark("end", argv)


def serve(argv: list) -> int:
    st = load()
    st["log"].append(argv)
    save(st)
    hang = st.get("hang_on")
    if hang and " ".join(argv).find(hang) >= 0:
        time.sleep(60)
    try:
        r = run(st, argv)
    except Exit as e:
        r = e
    sys.stdout.buffer.write(r.out.encode("utf-8"))
    sys.stderr.buffer.write(r.err.encode("utf-8"))
    return r.rc


sys.exit(main())
