"""Errors the station reports to a person: each message says what happened and what to do."""


class StationError(Exception):
    """An error with a message fit to show an installer as it is."""


class ConfigError(StationError):
    """A setting is missing or invalid."""
