"""`station report`, `station provision --demo N --report DIR` and `station devices edit`
as a user runs them: `python -m station ...` in a subprocess, settings and data in
tmp_path, the demo's firmware waits shortened."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from station.registry import Registry, Status, Step
from station.registry.models import Device

pytestmark = pytest.mark.timeout(240)


def station(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
        STATION_DEMO_TIMING="fast",
    )
    env.pop("QT_QPA_PLATFORM", None)  # the report must choose offscreen by itself
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
        input=stdin,
    )


def pdf_pages(path: Path) -> int:
    """Pages of a PDF Qt wrote (uncompressed object dictionaries): its /Type /Page objects."""
    return len(re.findall(rb"/Type\s*/Page(?!s)", path.read_bytes()))


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))


def test_demo_batch_writes_its_handover_report(tmp_path):
    db = tmp_path / "registry.sqlite3"  # kept after the run, to compare with
    out = tmp_path / "handover"
    proc = station(tmp_path, "--db", str(db), "provision", "--demo", "3", "--report", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    csv_path, pdf_path = out / "Demo-home-handover.csv", out / "Demo-home-handover.pdf"
    assert f"Handover report: {csv_path}, {pdf_path}" in proc.stdout

    rows = read_csv(csv_path)
    reg = Registry(str(db))
    try:
        devices = reg.devices()
        hashes = [d.token_hash for d in devices]
        assert len(devices) == 3
        assert [(r["node"], r["chip id"]) for r in rows] == [
            (d.node_name, d.chip_id) for d in devices
        ]
        assert all(r["MAC"] == d.mac for r, d in zip(rows, devices, strict=True))
    finally:
        reg.close()
    assert [r["state"] for r in rows] == ["online"] * 3
    assert all(r["attempts"] == "1" and r["failures"] == "" for r in rows)
    assert all(r["broker"].startswith("this station's broker (") for r in rows)
    assert all(r["QR label"] == f"{r['chip id']} {r['node']}" for r in rows)
    assert all(float(r["provisioning s"]) > 0 and r["provisioned (UTC)"] for r in rows)
    text = csv_path.read_text(encoding="utf-8-sig")
    for h in hashes:
        assert h not in text and h.split("$")[-1] not in text
    # 3 devices: the title page with the table, one page of labels.
    assert pdf_pages(pdf_path) == 2
    assert pdf_path.read_bytes().startswith(b"%PDF-")


def test_a_real_failure_in_a_demo_batch_is_in_the_report_with_its_reason(tmp_path):
    # A wrong home WiFi password: the simulated devices' firmware refuses it in its trial.
    out = tmp_path / "handover"
    wrong = "not-the-home-password"
    proc = station(tmp_path, "provision", "--demo", "2", "--password-stdin", "--report",
                   str(out), stdin=wrong + "\n")  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    csv_path = out / "Demo-home-handover.csv"
    rows = read_csv(csv_path)
    assert [r["state"] for r in rows] == ["failed", "failed"]
    for r in rows:
        assert r["attempts"] == "1" and r["chip id"] and r["provisioned (UTC)"] == ""
        assert "configure: " in r["failures"] and "password" in r["failures"].lower()
    assert wrong not in csv_path.read_text(encoding="utf-8-sig")
    assert pdf_pages(out / "Demo-home-handover.pdf") == 2


@pytest.fixture
def smith(tmp_path) -> tuple[Path, list[str], str]:
    """A registry file with home Smith: two devices provisioned, one whose WiFi password
    was refused; returns its path, the tokens issued and the failure's reason."""
    db = tmp_path / "r.sqlite3"
    reg = Registry(str(db))
    try:
        home = reg.add_home("Smith", "SmithWiFi")
        issued = [reg.register_device(home=home) for _ in range(3)]
        for n, i in enumerate(issued):
            reg.set_chip_id(i.device, f"A4CF12ABCD0{n}", mac=f"A4:CF:12:AB:CD:0{n}")
        for i in issued[:2]:
            Device.update(is_provisioned=True, online=True).where(
                Device.id == i.device.id
            ).execute()
            reg.update_job(i.job, status=Status.DONE, step=Step.COMPLETE, is_provisioned=True)
        reason = "the device refused the WiFi password for SmithWiFi (wrong password?)"
        reg.update_job(
            issued[2].job, status=Status.FAILED, step=Step.CONFIGURE, error=reason, attempts=1
        )
        reg.log_event(issued[2].device, "provisioning_failed", reason, {"step": "configure"})
        return db, [i.token for i in issued], reason
    finally:
        reg.close()


def test_report_of_an_existing_home_by_name_and_by_id(tmp_path, smith):
    db, tokens, reason = smith
    csv_path, pdf_path = tmp_path / "s.csv", tmp_path / "s.pdf"
    proc = station(tmp_path, "--db", str(db), "report", "Smith", "--csv", str(csv_path),
                   "--pdf", str(pdf_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(csv_path),
        str(pdf_path),
        "Smith: 3 devices: 2 online, 0 offline, 1 failed",
    ]
    rows = read_csv(csv_path)
    assert [r["state"] for r in rows] == ["online", "online", "failed"]
    assert rows[2]["failures"].endswith(f"configure: {reason}")
    assert rows[2]["chip id"] == "A4CF12ABCD02"
    for token in tokens:
        assert token not in csv_path.read_text(encoding="utf-8-sig")
    assert pdf_pages(pdf_path) == 2

    # By id, only the CSV.
    only = tmp_path / "by-id.csv"
    proc = station(tmp_path, "--db", str(db), "report", "1", "--csv", str(only))
    assert proc.returncode == 0, proc.stderr
    assert read_csv(only) == rows


def test_the_pdf_renders_and_its_labels_decode(tmp_path, smith):
    """Rendered as a user's viewer shows it, and every QR label read back by a
    decoder (.ci/os-packages installs poppler-utils and zbar-tools)."""
    for tool, package in (("pdftoppm", "poppler-utils"), ("zbarimg", "zbar-tools")):
        assert shutil.which(tool), f"{tool} is missing: sudo apt-get install {package}"
    db, _, _ = smith
    pdf_path = tmp_path / "s.pdf"
    assert (
        station(tmp_path, "--db", str(db), "report", "Smith", "--pdf", str(pdf_path)).returncode
        == 0
    )
    subprocess.run(
        ["pdftoppm", "-png", "-r", "200", str(pdf_path), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2
    found = subprocess.run(
        ["zbarimg", "-q", "--raw", str(pages[1])], capture_output=True, text=True
    ).stdout.split("\n")
    assert sorted(t for t in found if t) == [
        f"A4CF12ABCD0{n} esp32_dht11_00{n + 1}" for n in range(3)
    ]


def test_clear_errors_for_bad_input(tmp_path, smith):
    db, _, _ = smith

    def error(*args: str) -> str:
        proc = station(tmp_path, *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        return proc.stderr.strip().splitlines()[-1]

    out = str(tmp_path / "x.csv")
    assert error("--db", str(db), "report", "Smyth", "--csv", out) == (
        "station: error: no home 'Smyth' (by name or id); the homes are: Smith"
    )
    assert error("--db", str(db), "report", "Smith") == (
        "station: error: say what to write: --csv FILE and/or --pdf FILE"
    )
    missing = tmp_path / "no" / "such" / "dir" / "r.pdf"
    assert error("--db", str(db), "report", "Smith", "--pdf", str(missing)) == (
        f"station: error: cannot write {missing}: no folder {missing.parent}"
    )
    assert error("--db", str(db), "report", "Smith", "--csv", str(tmp_path)) == (
        f"station: error: cannot write {tmp_path}: it is a folder"
    )
    gone = tmp_path / "gone.sqlite3"
    assert "does not exist (nothing was created)" in error(
        "--db", str(gone), "report", "Smith", "--csv", out
    )
    assert not gone.exists()
    # No registry at all yet (the default file): nothing is created either.
    assert error("report", "Smith", "--csv", out) == (
        "station: error: no home 'Smith': there is no registry yet (nothing provisioned here)"
    )
    assert not Path(out).exists()
    # provision --report refuses a folder it could not make before anything starts.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = station(tmp_path, "provision", "--demo", "1", "--report", str(blocker / "sub"))
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
    assert "Starting" not in proc.stdout


def test_devices_edit_sets_name_and_location(tmp_path, smith):
    db, _, _ = smith
    proc = station(tmp_path, "--db", str(db), "devices", "edit", "esp32_dht11_001",
                   "--name", "Kitchen", "--location", "above the fridge")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "esp32_dht11_001: name 'Kitchen', location 'above the fridge'"
    # By chip id; an empty location clears it.
    proc = station(tmp_path, "--db", str(db), "devices", "edit", "A4CF12ABCD00", "--location", "")
    assert proc.stdout.strip() == "esp32_dht11_001: name 'Kitchen', location '(none)'"
    proc = station(tmp_path, "--db", str(db), "devices", "edit", "esp32_dht11_002",
                   "--location", "Living room")  # fmt: skip
    csv_path = tmp_path / "s.csv"
    station(tmp_path, "--db", str(db), "report", "Smith", "--csv", str(csv_path))
    rows = read_csv(csv_path)
    assert [(r["name"], r["location"]) for r in rows[:2]] == [("Kitchen", ""), ("", "Living room")]

    for args, words in [
        (["esp32_dht11_001", "--location", "x" * 101], "101 characters long; at most 100 fit"),
        (["esp32_dht11_001", "--name", "a\tb"], "the name contains a control character (U+0009)"),
        (["esp32_dht11_009", "--name", "x"], "no device 'esp32_dht11_009'"),
        (["esp32_dht11_001"], "say what to change: --name TEXT and/or --location TEXT"),
    ]:
        proc = station(tmp_path, "--db", str(db), "devices", "edit", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert words in proc.stderr
