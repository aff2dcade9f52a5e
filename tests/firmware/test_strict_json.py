"""The setup API reads RFC 8259 JSON and nothing else (firmware/README.md, "Strict
JSON"): MicroPython's json.loads is lenient, so firmware/httpd.py checks the raw body
before handing it over. A body that is not JSON gets 400 bad_json, never 200, 500 or
invalid_field, and the stored config.json stays byte for byte what it was.

Each malformed case of issue 9 part 5 has its own test; every one of them got 200
(and was stored), invalid_field or 500 before the check existed."""

from __future__ import annotations

import json

import pytest
from fw_helpers import seed_mqtt_body

DEPTH = 32  # httpd.MAX_DEPTH: containers nested deeper than this are refused


def _flash(device) -> bytes:
    return (device.flash_dir / "config.json").read_bytes()


def _refused(configured, device, raw: bytes, path: str = "/api/wifi") -> None:
    api, before = configured
    stored = _flash(device)
    r = api.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, (raw, r.status_code, r.text)
    body = r.json()
    assert body["error"] == "bad_json", (raw, body)
    assert isinstance(body["detail"], str) and body["detail"]
    assert "field" not in body
    assert device.config() == before
    assert _flash(device) == stored  # config.json not rewritten either
    # The server is still there and still takes a good body.
    assert api.get("/api/info").status_code == 200


# --- issue 9 part 5, one test per case -------------------------------------------


def test_a_trailing_comma_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"abc","password":"",}')


def test_a_trailing_comma_in_an_array_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"abc","password":"","x":[1,2,]}')


def test_a_missing_comma_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"abc" "password":""}')


def test_a_raw_tab_in_a_string_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"a\tbc","password":""}')


@pytest.mark.parametrize("ctl", [0x00, 0x01, 0x0A, 0x0D, 0x1B, 0x1F])
def test_a_raw_control_character_in_a_string_is_bad_json(configured, device, ctl):
    raw = b'{"ssid":"abc","password":"pass' + bytes([ctl]) + b'word"}'
    _refused(configured, device, raw)


def test_a_non_string_key_is_bad_json(configured, device):
    _refused(configured, device, b"{1:2}")
    _refused(configured, device, b'{"ssid":"abc","password":"",1:2}')


def test_a_backslash_x_escape_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"\\x41bc","password":""}')


@pytest.mark.parametrize("esc", [b"\\a", b"\\'", b"\\U0041", b"\\u41", b"\\u00G1", b"\\0"])
def test_other_invalid_escapes_are_bad_json(configured, device, esc):
    _refused(configured, device, b'{"ssid":"ab' + esc + b'c","password":""}')


def test_an_overlong_utf8_sequence_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"ab\xc0\xafc","password":""}')  # "/" in 2 bytes


def test_utf8_above_u10ffff_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"ab\xf4\x90\x80\x80c","password":""}')


def test_a_raw_cesu8_surrogate_is_bad_json(configured, device):
    _refused(configured, device, b'{"ssid":"ab\xed\xa0\x80c","password":""}')  # lone U+D800
    # A raw CESU-8 pair (U+1F600 as two 3-byte halves) is not UTF-8 either.
    _refused(configured, device, b'{"ssid":"ab\xed\xa0\xbd\xed\xb8\x80c","password":""}')


@pytest.mark.parametrize(
    "bad",
    [
        b"\x80",  # a lone continuation byte
        b"\xc3",  # a truncated 2-byte sequence
        b"\xe2\x82",  # a truncated 3-byte sequence
        b"\xe0\x80\xaf",  # overlong 3-byte
        b"\xf0\x80\x80\xaf",  # overlong 4-byte
        b"\xf5\x80\x80\x80",  # no such lead byte
        b"\xff",
    ],
)
def test_other_ill_formed_utf8_is_bad_json(configured, device, bad):
    _refused(configured, device, b'{"ssid":"ab' + bad + b'c","password":""}')


def test_700_nested_brackets_are_bad_json(configured, device):
    _refused(configured, device, b"[" * 700)
    _refused(configured, device, b"[" * 500 + b"]" * 500)  # closed, within 1024 bytes
    _refused(
        configured, device, b'{"ssid":"abc","password":"","x":' + b"[" * 400 + b"]" * 400 + b"}"
    )


# --- the rest of RFC 8259's grammar ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ssid" "abc","password":""}',  # a missing colon
        b'{"ssid":"abc","password"}',  # a key without a value
        b'{"ssid":"abc",,"password":""}',
        b'{,"ssid":"abc","password":""}',
        b"{'ssid':'abc','password':''}",
        b'{"ssid":"abc","password":"","port":01883}',  # a leading zero
        b'{"ssid":"abc","password":"","n":+1}',
        b'{"ssid":"abc","password":"","n":.5}',
        b'{"ssid":"abc","password":"","n":1.}',
        b'{"ssid":"abc","password":"","n":1e}',
        b'{"ssid":"abc","password":"","n":-}',
        b'{"ssid":"abc","password":"","n":NaN}',
        b'{"ssid":"abc","password":"","n":Infinity}',
        b'{"ssid":"abc","password":"","b":True}',
        b'{"ssid":"abc","password":"","b":nul}',
        b'{"ssid":"abc","password":"","b":truex}',
        b'{"ssid":"abc","password":""} {}',  # two texts
        b'{"ssid":"abc","password":""}x',
        b'{"ssid":"abc","password":"" /* c */}',
        b'{"ssid":"abc","password":""',  # unterminated object
        b'{"ssid":"abc","password":"}',  # unterminated string
        b'{"ssid":"abc","password":""]',  # mismatched close
        b'\xef\xbb\xbf{"ssid":"abc","password":""}',  # a byte order mark
        b'{"ssid":"abc",\x0c"password":""}',  # form feed is not JSON whitespace
        b'{"ssid":"abc",\xc2\xa0"password":""}',  # nor is U+00A0
    ],
)
def test_other_non_json_bodies_are_bad_json(configured, device, raw):
    _refused(configured, device, raw)


def test_the_mqtt_endpoint_refuses_the_same(configured, device):
    ok = json.dumps(seed_mqtt_body()).encode()
    _refused(configured, device, ok[:-1] + b",}", "/api/mqtt")
    _refused(configured, device, ok.replace(b"1883", b"01883"), "/api/mqtt")
    _refused(configured, device, ok.replace(b"home/", b"home/\xc0\xaf"), "/api/mqtt")
    _refused(configured, device, ok.replace(b"home/", b"home/\t"), "/api/mqtt")


# --- valid JSON still passes --------------------------------------------------------


@pytest.mark.parametrize(
    "raw, ssid",
    [
        (b' \t\r\n{ "ssid" : "abc" , "password" : "" } \n', "abc"),
        (b'{"ssid":"a\\"\\\\\\/\\b\\f\\n\\r\\tz","password":""}', 'a"\\/\b\f\n\r\tz'),
        (b'{"ssid":"\\u0041\\u00e9\\u20AC","password":""}', "A\u00e9\u20ac"),
        (b'{"ssid":"\\ud83d\\ude00","password":""}', "\U0001f600"),
        (
            '{"ssid":"é€😀\U0010ffff\ud7ff\ue000","password":""}'.encode(),
            "é€😀\U0010ffff\ud7ff\ue000",
        ),
        (
            b'{"ssid":"abc","password":"","n":[0,-0,1.5,-2e10,3E+2,4e-2,0.0e0,123456789],'
            b'"o":{"a":{"b":[true,false,null,{},[]]}},"s":""}',
            "abc",
        ),
        (
            b'{"ssid":"abc","password":"","x":' + b"[" * (DEPTH - 1) + b"]" * (DEPTH - 1) + b"}",
            "abc",
        ),
        (b'{"ssid":"first","password":"","ssid":"abc"}', "abc"),  # RFC 8259: names SHOULD be unique
    ],
)
def test_valid_json_is_still_accepted(configured, device, raw, ssid):
    api, _ = configured
    r = api.post("/api/wifi", data=raw)
    assert r.status_code == 200, (raw, r.text)
    assert device.config()["wifi"] == {"ssid": ssid, "password": ""}


def test_nesting_one_deeper_than_the_bound_is_bad_json(configured, device):
    _refused(
        configured, device, b'{"ssid":"abc","password":"","x":' + b"[" * DEPTH + b"]" * DEPTH + b"}"
    )
