# The CA certificate of POST /api/mqtt ("ca", one PEM certificate, up to 4096
# characters), taken out of the raw body before json.loads sees it.
#
# Why not json.loads: setup mode's heap is in pieces. At 96 KB on the unix port a
# 4.7 KB body with a 4 KB CA failed with MemoryError in json.loads (allocating
# 3.4 KB for the string) while 30 KB were free in total. The body is read
# into one buffer reserved when setup mode starts (httpd.Server limits); here the
# PEM is unescaped and base64-decoded in place inside that buffer, the DER bytes
# are copied out (the only allocation: at most 3 KB, a few hundred bytes for an EC
# CA) and the JSON string is shrunk to "" so json.loads then builds nothing big.
# Setup mode only: home mode never loads this module.
from httpd import _string, _ws
from validate import CA_MAX, Invalid

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"
_ESCAPES = {0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09, 0x62: 0x08, 0x66: 0x0C}  # \n \r \t \b \f
_BLANKS = b" \t\r\n"
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ONE_PEM = "ca must be one PEM certificate: -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----"


def take(b, key=b"ca"):
    # b: a bytearray holding a JSON object that passed httpd's strict scan. If its
    # top-level member `key` is a string: check that it is one PEM certificate
    # (Invalid("ca", ...) if not), blank it to "" in b, and return the DER bytes.
    # Otherwise (absent, null, a number...) return None and leave b alone.
    span = _member(b, key)
    if span is None:
        return None
    vs, ve = span
    start = vs + 1
    end = _unescape(b, start, ve - 1)  # b[start:end] is the PEM text, as bytes
    der = _x509(_decode(b, start, end))
    b[vs + 1] = 0x22  # the string is now "", followed by blanks
    for k in range(vs + 2, ve):
        b[k] = 0x20
    return der


def _member(b, key):
    # (start, end) of the last top-level member `key` whose value is a string.
    i = _ws(b, _ws(b, 0) + 1)  # past the opening {
    found = None
    n = len(b)
    while i < n and b[i] == 0x22:
        ke = _string(b, i)
        same = b[i + 1:ke - 1] == key
        i = _ws(b, _ws(b, ke) + 1)  # past the colon
        ve = _value_end(b, i)
        if same:
            found = (i, ve) if b[i] == 0x22 else None
        i = _ws(b, ve)
        if i < n and b[i] == 0x2C:
            i = _ws(b, i + 1)
        else:
            break
    return found


def _value_end(b, i):
    c = b[i]
    if c == 0x22:
        return _string(b, i)
    if c == 0x7B or c == 0x5B:
        depth = 0
        while True:
            c = b[i]
            if c == 0x22:
                i = _string(b, i)
                continue
            if c == 0x7B or c == 0x5B:
                depth += 1
            elif c == 0x7D or c == 0x5D:
                depth -= 1
                if not depth:
                    return i + 1
            i += 1
    while i < len(b) and b[i] not in b",}] \t\r\n":
        i += 1
    return i


def _unescape(b, r, end):
    # JSON string content b[r:end] -> its text, written in place from r; returns
    # the end of the text. Anything beyond ASCII becomes 0xFF (never PEM), one per
    # character, so the length check counts characters.
    w = r
    chars = 0
    while r < end:
        c = b[r]
        if c == 0x5C:
            e = b[r + 1]
            if e == 0x75:  # \uXXXX
                c = int(bytes(b[r + 2:r + 6]), 16)
                if c >= 0x80:
                    c = 0xFF
                r += 6
            else:
                c = _ESCAPES.get(e, e)  # \" \\ \/ are themselves
                r += 2
        else:
            r += 1
            if c >= 0x80:
                if c & 0xC0 == 0x80:
                    continue  # a UTF-8 continuation byte: same character
                c = 0xFF
        chars += 1
        if chars > CA_MAX:
            raise Invalid("ca", "ca must be at most %d characters (one PEM certificate)" % CA_MAX)
        b[w] = c
        w += 1
    return w


def _blank(b, i, j):
    for k in range(i, j):
        if b[k] not in _BLANKS:
            return False
    return True


def _decode(b, start, end):
    n = 0
    j = b.find(_BEGIN, start, end)
    while j >= 0:
        n += 1
        j = b.find(_BEGIN, j + 1, end)
    if n > 1:
        raise Invalid("ca", "ca must hold exactly one certificate, it holds %d" % n)
    bb = b.find(_BEGIN, start, end)
    be = b.find(_END, start, end)
    if bb < 0 or be < bb or b.find(_END, be + 1, end) >= 0 or not _blank(b, start, bb) \
            or not _blank(b, be + len(_END), end):
        raise Invalid("ca", _ONE_PEM)
    # base64, decoded in place from `start` (the output never overtakes the input)
    table = bytearray(b"\xff" * 256)
    for v, c in enumerate(_ALPHABET):
        table[c] = v
    acc = bits = count = pad = 0
    d = start
    for k in range(bb + len(_BEGIN), be):
        c = b[k]
        if c in _BLANKS:
            continue
        count += 1
        if c == 0x3D:  # =
            pad += 1
            continue
        v = table[c]
        if v == 0xFF or pad:
            raise Invalid("ca", "ca: the certificate's body is not base64")
        acc = ((acc << 6) | v) & 0xFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            b[d] = (acc >> bits) & 0xFF
            d += 1
    if count % 4 or pad > 2 or not count:
        raise Invalid("ca", "ca: the certificate's body is not base64")
    return bytes(memoryview(b)[start:d])


def _x509(der):
    # The shape of an X.509 certificate: SEQUENCE {
    # SEQUENCE tbsCertificate, SEQUENCE signatureAlgorithm, BIT STRING signature }.
    # Mbed TLS itself reads it at the trial's broker check and at every connect
    # (a 2.8 KB SSLContext: setup mode's fragmented heap cannot also spare one
    # while it is handling this request).
    outer = _tlv(der, 0)
    parts = bytearray()  # the tags inside
    if outer and outer[0] == 0x30 and outer[2] == len(der):
        i = outer[1]
        while i < len(der) and len(parts) < 4:
            t = _tlv(der, i)
            if not t:
                break
            parts.append(der[i])
            i = t[2]
        if i != len(der):
            parts = bytearray()
    if parts != b"\x30\x30\x03":
        raise Invalid("ca", "ca: the PEM body is not one DER-encoded X.509 certificate")
    return der


def _tlv(b, i):
    # (tag, start of the value, end) of the DER element at b[i], or None.
    if i + 2 > len(b):
        return None
    n = b[i + 1]
    j = i + 2
    if n >= 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or j + k > len(b):
            return None
        n = 0
        for x in b[j:j + k]:
            n = (n << 8) | x
        j += k
    if j + n > len(b):
        return None
    return b[i], j, j + n
