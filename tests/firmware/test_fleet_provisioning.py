"""Done-when of issue 3: a simulated fleet, provisioned by hand through the API
(the way curl sends it), shows up on the broker."""

from __future__ import annotations

import json

from fw_helpers import FAST, HOME_PASSWORD, HOME_SSID, SEED_BROKER, Api
from support import wait_for

from station.sim.fleet import Fleet, fleet_chip_ids

CURL = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "curl/8.5.0"}


def test_a_fleet_provisioned_like_curl_shows_up_on_the_broker(
    home, firmware_dir, mqtt_broker, observer
):
    chips = fleet_chip_ids(4)
    with Fleet(home, firmware_dir, chips, timing=FAST) as fleet:
        nodes = {}
        for i, chip in enumerate(chips, 1):
            home.wait_for_setup_ap(chip)
            # What the station's WiFi backend does: join the AP by name with the passphrase.
            ap = home.join_setup_ap(f"esp32-dht11-Setup-{chip[-6:]}", "12345678")
            api = Api(ap.api_url)
            assert api.get("/api/info").json()["chip_id"] == chip
            node = f"esp32_dht11_{i:03d}"
            token = f"tok-{chip}"
            mqtt_broker.add_user(node, token)
            wifi = json.dumps({"ssid": HOME_SSID, "password": HOME_PASSWORD})
            mqtt = json.dumps(
                {
                    "broker": SEED_BROKER,
                    "port": 1883,
                    "topic_prefix": f"home/{node}",
                    "node_name": node,
                    "username": node,
                    "password": token,
                }
            )
            assert api.post("/api/wifi", data=wifi, headers=CURL).json() == {"ok": True}
            assert api.post("/api/mqtt", data=mqtt, headers=CURL).json() == {"ok": True}
            assert api.post("/api/restart", headers=CURL).json() == {"ok": True}
            nodes[node] = ap.chip_id
        for node, chip in nodes.items():
            observer.wait(f"home/{node}/status", lambda p: p == b"online", timeout=15)
            info = json.loads(observer.wait(f"home/{node}/info"))
            assert info["chip_id"] == chip and info["node_name"] == node
            wait_for(lambda node=node: observer.count(f"home/{node}/state") >= 2, 5)
        assert home.setup_aps() == []  # every AP is down: all of them are running
        assert all(d.running for d in fleet.devices)
