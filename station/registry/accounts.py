"""Integration accounts: named MQTT logins for tools that are not devices.

    accounts = Accounts(registry)
    issued = accounts.add("homeassistant", AccountRole.OBSERVER)   # password shown once
    accounts.rotate("homeassistant")                               # a new one; the old dies
    accounts.remove("homeassistant")

The password is a 256-bit random token, kept only as its SHA-256 hash (the reasoning
of station.registry.credentials: a random token cannot be guessed, so a slow hash buys
nothing and would stall the broker loop). An account name never collides with a
device's login: names taken by devices, names a future device could get (the node-name
prefix) and the station's own login are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import peewee

from station.errors import StationError
from station.registry import credentials
from station.registry.db import write_transaction
from station.registry.models import Account, AccountRole, Device, utcnow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
RESERVED = frozenset({"station"})  # broker.access.STATION_USERNAME


class AccountError(StationError):
    pass


@dataclass(frozen=True)
class AccountCredentials:
    """What the broker needs to check a login (never the password)."""

    name: str
    role: AccountRole
    password_hash: str


@dataclass(frozen=True)
class IssuedAccount:
    """An account and its password, which exists in clear only here."""

    account: Account
    password: str


class Accounts:
    """The account table's operations (the registry's database must be open)."""

    def __init__(self, db: peewee.Database, node_name_prefix: str) -> None:
        self.db = db
        self.node_name_prefix = node_name_prefix

    def _check_name(self, name: str) -> str:
        if not NAME_RE.match(name):
            raise AccountError(
                f"account name {name!r}: use 1-32 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if name.lower() in RESERVED:
            raise AccountError(f"{name!r} is the station's own login; choose another name")
        if self.node_name_prefix and name.startswith(self.node_name_prefix):
            raise AccountError(
                f"{name!r} looks like a device's node name ({self.node_name_prefix}…), "
                "which a device may be given; choose another name"
            )
        if Device.get_or_none(Device.mqtt_username == name) is not None:
            raise AccountError(f"{name!r} is a device's login; choose another name")
        return name

    @staticmethod
    def _role(role: AccountRole | str) -> AccountRole:
        try:
            return AccountRole(role)
        except ValueError:
            words = ", ".join(r.value for r in AccountRole)
            raise AccountError(f"unknown role {role!r} (one of: {words})") from None

    def add(self, name: str, role: AccountRole | str) -> IssuedAccount:
        name = self._check_name(name.strip())
        role = self._role(role)
        password = credentials.new_token()
        try:
            with write_transaction(self.db):
                account = Account.create(
                    name=name, role=role, password_hash=credentials.hash_token(password)
                )
        except peewee.IntegrityError:
            raise AccountError(
                f"an account named {name!r} already exists (`accounts rotate {name}` "
                "gives it a new password)"
            ) from None
        return IssuedAccount(account, password)

    def get(self, name: str) -> Account:
        account = Account.get_or_none(Account.name == name)
        if account is None:
            raise AccountError(f"no account {name!r} (`station accounts list` shows them)")
        return account

    def all(self) -> list[Account]:
        return list(Account.select().order_by(Account.name))

    def rotate(self, name: str) -> IssuedAccount:
        """A new password; the old one stops working at once."""
        password = credentials.new_token()
        with write_transaction(self.db):
            account = self.get(name)
            account.password_hash = credentials.hash_token(password)
            account.rotated_at = utcnow()
            account.save()
        return IssuedAccount(account, password)

    def remove(self, name: str) -> Account:
        with write_transaction(self.db):
            account = self.get(name)
            Account.delete().where(Account.id == account.id).execute()
        return account

    def credentials(self, name: str) -> AccountCredentials | None:
        row = Account.get_or_none(Account.name == name)
        return None if row is None else _credentials(row)

    def all_credentials(self) -> list[AccountCredentials]:
        return [_credentials(a) for a in Account.select()]


def _credentials(row: Account) -> AccountCredentials:
    return AccountCredentials(row.name, AccountRole(row.role), row.password_hash)
