# Why a TLS handshake failed, in a short code for /api/status ("broker_error") and
# a sentence for a person ("broker_detail"). Imported only when one fails.
from net import _ETIMEDOUT, TLSError

# Mbed TLS's verify messages (x509_crt_verify_strings) -> our codes, most basic first:
# a chain that is not ours makes the other checks moot.
_VERIFY = (
    ("not correctly signed by the trusted CA", "tls_untrusted",
     "the broker's certificate is not signed by the CA the device was given"),
    ("validity has expired", "tls_expired", "the broker's certificate has expired"),
    ("validity starts in the future", "tls_not_yet_valid",
     "the broker's certificate is not valid yet (or the device's clock is wrong)"),
    ("Common Name (CN) does not match", "tls_hostname",
     "the broker's certificate is not for %s"),
)


def error(e, host, port):
    # A TLSError for what the handshake raised: ValueError(verify text) or OSError.
    where = "%s:%d" % (host, port)
    text = str(e.args[0]) if e.args else ""
    if isinstance(e, MemoryError):
        return TLSError("tls_handshake", "TLS to " + where + ": out of memory for the handshake")
    if isinstance(e, ValueError) and text == "invalid cert":  # load_verify_locations
        return TLSError("tls_bad_ca", "TLS to " + where + ": Mbed TLS cannot read the CA certificate the device was given")
    if isinstance(e, ValueError):
        for needle, code, detail in _VERIFY:
            if needle in text:
                if "%s" in detail:
                    detail = detail % host
                return TLSError(code, "TLS to " + where + ": " + detail)
        return TLSError("tls_rejected", "TLS to " + where + ": certificate refused: " + " ".join(text.split()))
    err = e.args[0] if e.args and isinstance(e.args[0], int) else None
    if err in (104, 32, 107, 128) or (isinstance(err, int) and err < -255 and "EOF" in str(e)):
        why = "the broker closed the connection during the handshake (does it speak TLS on this port?)"
    elif err == _ETIMEDOUT or err == 116:  # 116: ETIMEDOUT on lwIP
        why = "no TLS answer from the broker in time (does it speak TLS on this port?)"
    elif err == 12:  # ENOMEM: Mbed TLS could not allocate its buffers
        why = "out of memory for the handshake"
    elif len(e.args) > 1:
        why = "handshake failed: " + str(e.args[1])
    else:
        why = "handshake failed (error %s)" % err
    return TLSError("tls_handshake", "TLS to " + where + ": " + why)


