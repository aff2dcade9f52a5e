"""Firmware bundles (issue 11): the built file set of a version with a manifest of
sizes and SHA-256s, checked on load, and served over real HTTP on loopback with
resumable downloads."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from station.fleet.bundle import (
    MANIFEST,
    BundleError,
    canonical,
    load_bundle,
    make_bundle,
    manifest_digest,
)
from station.fleet.bundle_server import BundleServer
from station.sim.firmware import FirmwareError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundles"), version="1.1.0")


def test_the_manifest_lists_every_built_file_with_its_size_and_hash(bundle):
    files = {f["path"]: f for f in bundle.manifest["files"]}
    assert {"boot.py", "main.py", "app.mpy", "factory.mpy"} <= set(files)
    for path, entry in files.items():
        data = (bundle.root / path).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert [f["path"] for f in bundle.manifest["files"]] == sorted(files)
    raw = (bundle.root / MANIFEST).read_bytes()
    assert json.loads(raw) == {k: v for k, v in bundle.manifest.items() if k != "sha256"}
    assert raw == canonical(json.loads(raw))  # canonical: what the digest is taken over
    # The manifest's own hash: of the file's bytes, as a device hashes what it downloads.
    assert bundle.digest == hashlib.sha256(raw).hexdigest()
    assert (bundle.root / "manifest.sha256").read_text().strip() == bundle.digest


def test_the_built_firmware_reports_the_bundles_version(bundle):
    # factory.mpy holds FIRMWARE, which the device reports in `info`.
    assert b"1.1.0" in (bundle.root / "factory.mpy").read_bytes()
    assert b"1.0.0" not in (bundle.root / "factory.mpy").read_bytes()


def test_load_finds_a_changed_file_and_a_changed_manifest(bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(bundle.root, copy)
    assert load_bundle(copy).digest == bundle.digest
    (copy / "app.mpy").write_bytes((copy / "app.mpy").read_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"app\.mpy differs from the manifest"):
        load_bundle(copy)
    manifest = json.loads((copy / MANIFEST).read_bytes())
    manifest["version"] = "9.9.9"
    (copy / MANIFEST).write_bytes(canonical(manifest))
    with pytest.raises(BundleError, match="sha256 does not match"):
        load_bundle(copy)
    manifest["files"][0]["path"] = "../outside"
    (copy / MANIFEST).write_bytes(canonical(manifest))
    (copy / "manifest.sha256").write_text(manifest_digest(manifest))
    with pytest.raises(BundleError, match="leaves the bundle"):
        load_bundle(copy)


@pytest.mark.parametrize("version", ["", "v1", "1", "1.0.0; rm -rf", "1.0.0\n"])
def test_bad_versions_are_refused(tmp_path, version):
    with pytest.raises(FirmwareError, match="use dotted numbers"):
        make_bundle(tmp_path, version=version)


def test_the_server_serves_the_manifest_and_files_and_nothing_else(bundle):
    with BundleServer(bundle) as server:
        manifest = requests.get(server.url_of(), timeout=5)
        assert manifest.status_code == 200
        assert manifest.content == (bundle.root / MANIFEST).read_bytes()
        assert hashlib.sha256(manifest.content).hexdigest() == bundle.digest
        app = requests.get(server.url_of("app.mpy"), timeout=5)
        assert app.content == (bundle.root / "app.mpy").read_bytes()
        host, port = server.address
        for path in (
            f"/{bundle.digest}/../{MANIFEST}",
            f"/{'0' * 64}/app.mpy",  # another bundle's hash
            f"/{bundle.digest}/app.py",  # not in the manifest
            "/",
        ):
            assert requests.get(f"http://{host}:{port}{path}", timeout=5).status_code == 404
        assert server.requests[f"/{bundle.digest}/app.mpy"] == 1


def test_a_download_resumes_from_where_it_stopped(bundle):
    data = (bundle.root / "app.mpy").read_bytes()
    with BundleServer(bundle) as server:
        rest = requests.get(server.url_of("app.mpy"), headers={"Range": "bytes=100-"}, timeout=5)
        assert rest.status_code == 206
        assert rest.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
        assert rest.content == data[100:]
        beyond = requests.get(
            server.url_of("app.mpy"), headers={"Range": f"bytes={len(data) + 1}-"}, timeout=5
        )
        assert beyond.status_code == 416
        assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"
