"""ESP32 provisioning station: embedded broker, device registry, WiFi switching, GUI."""

__version__ = "0.1.0"
