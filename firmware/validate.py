# Field rules of PROTOCOL.md section 1 ("Validation"). Each check returns a clean
# copy holding only the known fields, or raises Invalid(field, detail).
# Unknown fields are ignored: the station may send fields a newer protocol adds.

_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_LABEL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"

CA_MAX = 4096  # characters of the PEM text in /api/mqtt "ca" (checked in pem.py)

INTERVAL_MIN = 1  # a DHT11 cannot be read faster than once a second
INTERVAL_MAX = 3600


class Invalid(Exception):
    def __init__(self, field, detail):
        super().__init__(field, detail)
        self.field = field
        self.detail = detail


def _is_int(v):
    # bool is an int subclass on CPython (not on MicroPython): refuse it on both.
    return isinstance(v, int) and not isinstance(v, bool)


def _string(body, field):
    if field not in body:
        raise Invalid(field, field + " is required")
    return _text(body[field], field)


def _text(v, field):
    # Surrogates from JSON escapes are repaired in httpd.json_object already.
    if not isinstance(v, str):
        raise Invalid(field, field + " must be a string")
    return v


def _is_ipv4(parts):
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return False
    return True


def is_host(s):
    if not s or len(s) > 253:
        return False
    name = s[:-1] if s.endswith(".") else s  # a fully qualified name may end in "."
    parts = name.split(".")
    if all(p.isdigit() for p in parts if p):
        return _is_ipv4(parts)  # looks numeric: it must be a real IPv4 address
    for label in parts:
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        for c in label:
            if c not in _LABEL_CHARS:
                return False
    return True


def is_interval(v):
    return _is_int(v) and INTERVAL_MIN <= v <= INTERVAL_MAX


def wifi(body):
    ssid = _string(body, "ssid")
    if not 1 <= len(ssid.encode()) <= 32:
        raise Invalid("ssid", "ssid must be 1-32 bytes of UTF-8")
    password = _string(body, "password")
    # WPA2 hashes the passphrase's bytes and takes at most 63 of them. 802.11 says
    # printable ASCII, but some routers take UTF-8: allow it, counting bytes too.
    if password and not (8 <= len(password) <= 63 and len(password.encode()) <= 63):
        raise Invalid("password", "password must be empty (open network) or 8-63 characters, at most 63 bytes")
    return {"ssid": ssid, "password": password}


def mqtt(body):
    broker = _string(body, "broker")
    if not is_host(broker):
        raise Invalid("broker", "broker must be a host name or IPv4 address (at most 253 characters)")
    if "port" not in body:
        raise Invalid("port", "port is required")
    port = body["port"]
    if not _is_int(port) or not 1 <= port <= 65535:
        raise Invalid("port", "port must be an integer 1-65535")
    prefix = _string(body, "topic_prefix")
    if not 1 <= len(prefix) <= 128:
        raise Invalid("topic_prefix", "topic_prefix must be 1-128 characters")
    if "+" in prefix or "#" in prefix or prefix[0] in "$/" or prefix[-1] == "/":
        raise Invalid("topic_prefix", "topic_prefix must not contain + # or start with $ / or end with /")
    for c in prefix:
        if c < " " or c == "\x7f":  # NUL and the other control characters
            raise Invalid("topic_prefix", "topic_prefix must not contain control characters")
    node = _string(body, "node_name")
    if not 1 <= len(node) <= 32:
        raise Invalid("node_name", "node_name must be 1-32 characters")
    for c in node:
        if c not in _NAME_CHARS:
            raise Invalid("node_name", "node_name may hold only A-Z a-z 0-9 _ -")
    out = {"broker": broker, "port": port, "topic_prefix": prefix, "node_name": node}
    # Optional MQTT credentials (the seed's body has none). null means absent.
    user = body.get("username")
    password = body.get("password")
    if user is not None:
        user = _text(user, "username")
        if len(user) > 128:
            raise Invalid("username", "username must be a string of at most 128 characters")
        out["username"] = user
    if password is not None:
        password = _text(password, "password")
        if len(password) > 256:
            raise Invalid("password", "password must be a string of at most 256 characters")
        if user is None:
            raise Invalid("password", "MQTT 3.1.1 allows a password only with a username")
        out["password"] = password
    # Optional TLS (issue 10): "tls": true needs "ca", one PEM certificate of the CA
    # that signed the broker's certificate, which pem.take has turned into DER bytes
    # already. The clean copy holds them under "ca" (devconfig: a file of its own).
    tls = body.get("tls")
    ca = body.get("ca")
    if tls is not None and tls is not True and tls is not False:
        raise Invalid("tls", "tls must be true or false")
    if tls is True:
        if ca is None:
            raise Invalid("ca", "tls: true needs ca, the PEM certificate of the CA that signed "
                                "the broker's certificate (the device never connects over TLS without verifying it)")
        if not isinstance(ca, bytes):  # pem.take turns every JSON string into DER
            raise Invalid("ca", "ca must be a string: one PEM certificate")
        out["tls"] = True
        out["ca"] = ca
    elif ca is not None:
        raise Invalid("tls", "ca is given but tls is not true: set tls to true to use it, or leave ca out")
    return out
