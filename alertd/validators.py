"""Option validators: each turns a TOML value into what the config holds, or raises ``ValueError`` saying why.

The config's option table (:data:`alertd.config.OPTIONS`) pairs each option with one of these.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from alertd import schedule as schedule_mod
from alertd.mailaddr import MailAddress, parse_address
from alertd.quiet import QuietHours, parse_quiet_hours

Converter = Callable[[Any], Any]


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type_name(value)}")
    return value


def nonempty(value: Any) -> str:
    text = string(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def int_range(low: int, high: int) -> Converter:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type_name(value)}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return convert


def duration(value: Any) -> timedelta:
    return schedule_mod.parse_duration(string(value))


def duration_at_least(minimum: timedelta) -> Converter:
    def convert(value: Any) -> timedelta:
        length = duration(value)
        if length < minimum:
            raise ValueError(f"must be at least {schedule_mod.format_duration(minimum)}, got {value!r}")
        return length

    return convert


def choice(*choices: str) -> Converter:
    def convert(value: Any) -> str:
        text = string(value)
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(repr(c) for c in choices)}, got {text!r}")
        return text

    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type_name(value)}")
    return value


def string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array of strings, got {type_name(value)}")
    for element in value:
        if not isinstance(element, str):
            raise ValueError(f"expected an array of strings, found {type_name(element)}")
    return tuple(value)


def network_list(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """An array of networks in CIDR notation (``"10.0.0.0/8"``, ``"fd00::/8"``; a bare address is a /32 or
    /128)."""
    networks = []
    for cidr in string_list(value):
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR notation: {cidr!r} (e.g. '10.0.0.0/8')") from exc
    return tuple(networks)


_URL = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)


def http_url(value: Any) -> str:
    text = nonempty(value)
    if not _URL.match(text):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def mail_address(value: Any) -> MailAddress:
    """One mail address, parsed by the parser the renderer uses (:mod:`alertd.mailaddr`)."""
    return parse_address(nonempty(value))


def timezone_name(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = nonempty(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {text!r} (use an IANA name such as 'Europe/Paris')") from exc
    return text


def digest_schedule(value: Any) -> schedule_mod.DigestSchedule:
    return schedule_mod.parse_digest_schedule(string(value))


def path(value: Any) -> Path:
    return Path(nonempty(value))


def fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {type_name(value)}")
    if not 0 <= value <= 0.5:
        raise ValueError(f"must be between 0 and 0.5, got {value}")
    return float(value)


def type_name(value: Any) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
    }
    return names.get(type(value), "a table" if isinstance(value, dict) else type(value).__name__)


def quiet_hours(value: Any) -> QuietHours:
    return parse_quiet_hours(string(value))


def listen_address(value: Any) -> str:
    text = nonempty(value)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as '127.0.0.1:9464', got {text!r}")
    return text
