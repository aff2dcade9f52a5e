"""StationRuntime: the one object the GUI holds, in demo mode, end to end."""

from __future__ import annotations

from station.provisioning import BulkQueue
from station.runtime import StationRuntime
from station.settings import Settings


def test_demo_runtime_provisions_and_cleans_up(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    rt = StationRuntime.start(settings, demo_devices=2)
    tmp = rt._tmp
    try:
        assert rt.settings.broker.bind_host == "127.0.0.1"  # a demo never listens on the LAN
        assert settings.broker.bind_host == "0.0.0.0" and rt.file_settings is settings
        home = rt.registry.homes()[0]
        assert rt.secrets.home_password(home.id) == rt.demo.home_password
        queue = BulkQueue(rt.provisioning_station())
        queue.add(queue.scan(), home)
        summary = queue.run(home, rt.secrets.home_password(home.id))
        assert summary.ok and len(summary.done) == 2
    finally:
        rt.stop()
    assert not (tmp_path / "data" / "registry.sqlite3").exists()
    import os

    assert not os.path.exists(tmp)
