from __future__ import annotations

import json

import pytest

from station import settings as s
from station.errors import ConfigError


def test_defaults_match_the_seed():
    cfg = s.Settings()
    assert cfg.broker.port == 1883 and cfg.broker.bind_host == "0.0.0.0"
    assert cfg.provisioning.setup_passphrase == "12345678"
    assert cfg.provisioning.online_timeout_s == 60
    assert not cfg.broker.allow_anonymous


def test_round_trip(tmp_path):
    cfg = s.Settings()
    cfg.broker.port = 1884
    cfg.provisioning.wifi_backend = "manual"
    path = s.save(cfg, tmp_path / "cfg" / "settings.json")
    loaded = s.load(path)
    assert loaded == cfg
    assert list((tmp_path / "cfg").iterdir()) == [path]  # no temp file left behind


def test_missing_file_gives_defaults(tmp_path):
    assert s.load(tmp_path / "none.json") == s.Settings()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "cannot read settings"),
        ('{"brokr": {}}', "unknown settings section 'brokr'"),
        ('{"broker": {"prot": 1}}', "unknown setting broker.prot"),
        ('{"broker": {"port": "1883"}}', "broker.port must be int"),
        ('{"broker": {"port": 70000}}', "0-65535"),
        ('{"broker": {"bundle_port": -1}}', "broker.bundle_port must be 0-65535, got -1"),
        ('{"broker": {"allow_anonymous": 1}}', "must be bool"),
        ('{"provisioning": {"setup_passphrase": "short"}}', "8-63"),
        ("[]", "JSON object"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, raw, message):
    path = tmp_path / "settings.json"
    path.write_text(raw)
    with pytest.raises(ConfigError, match=message):
        s.load(path)


def test_int_accepted_for_float(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"provisioning": {"online_timeout_s": 90}}))
    assert s.load(path).provisioning.online_timeout_s == 90
