# Build-time constants and timing defaults of the firmware.
# `station firmware build --ap-passphrase` rewrites AP_PASSPHRASE in the built copy.

MODEL = "esp32-dht11"
FIRMWARE = "1.0.0"
AP_SSID_PREFIX = "esp32-dht11-Setup-"
AP_PASSPHRASE = "12345678"

# POST /api/mqtt may carry a 4096-character PEM CA (issue 10): its body may be this
# long (the others stay at 1024), with room for the other fields and JSON escapes.
MQTT_BODY_MAX = 6144

# Defaults match PROTOCOL.md. A board may override any of them (the host board
# reads ESP32SIM_TIMING) so tests run in seconds, not minutes.
TIMING = {
    "fallback_s": 60,  # home network failing this long -> back to setup mode
    "retry_s": 180,  # setup mode retries the stored home network this often
    "busy_s": 300,  # no automatic retry for this long after a person used the API
    "trial_s": 20,  # one trial/association attempt gives up after this
    "probe_ms": 3000,  # TCP connect to the broker (trial check and MQTT)
    "restart_delay_ms": 1000,  # /api/restart and the reboot command
    "interval_s": 10,  # state publish period until set_interval changes it
    "keepalive_s": 30,
    "backoff_min_ms": 1000,
    "backoff_max_ms": 60000,
    # Until a config has reached its broker once, retry at least this often: right after
    # provisioning the broker is the installer's laptop, which may still be visiting
    # other devices' setup APs and comes back any second (see firmware/README.md).
    "unproven_retry_ms": 3000,
    "identify_s": 5,
    "button_window_ms": 2000,  # BOOT must be pressed within this after power-on
    "button_hold_s": 5,
    "ota_read_ms": 10000,  # an OTA download gives up when one read waits this long
    "ota_confirm_s": 60,  # new firmware on trial must reach its broker within this
}
