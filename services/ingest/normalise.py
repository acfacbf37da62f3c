"""Enrichment by source address: canonical text, trusted network, geo.

Address facts (canonical text, trusted network, MaxMind location) are computed once per
distinct address and cached, since a stream repeats the same few thousand.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any, Iterable, NamedTuple

log = logging.getLogger(__name__)

# Caches are cleared when they reach this size: simpler than LRU bookkeeping,
# and a real stream's working set of names and addresses is far smaller.
_CACHE_LIMIT = 200_000
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_INET4 = bytes((2, 32, 0, 4))
_INET6 = bytes((3, 128, 0, 16))


class Geo(NamedTuple):
    country: str | None
    city: str | None
    latitude: float | None
    longitude: float | None


NO_GEO = Geo(None, None, None, None)


class Address(NamedTuple):
    text: str  # canonical form, as Postgres' inet prints it
    wire: bytes  # Postgres' binary form of inet, as binary COPY sends it
    trusted: bool
    geo: Geo  # from the MaxMind database; NO_GEO when unknown


class GeoDatabase:
    """Locations from a MaxMind (GeoIP2/GeoLite2 City or Country) .mmdb file."""

    def __init__(self, path: str):
        import maxminddb

        self._reader = maxminddb.open_database(path)

    def locate(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Geo:
        if not ip.is_global:
            return NO_GEO
        try:
            record = self._reader.get(ip)
        except ValueError:  # e.g. an IPv6 address in an IPv4-only database
            return NO_GEO
        return geo_from_record(record)

    def close(self) -> None:
        self._reader.close()


def geo_from_record(record: Any) -> Geo:
    if not isinstance(record, dict):
        return NO_GEO
    country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
    city = ((record.get("city") or {}).get("names") or {}).get("en")
    location = record.get("location") or {}
    lat, lon = location.get("latitude"), location.get("longitude")
    if lat is None or lon is None:
        lat = lon = None
    return Geo(country.upper() if isinstance(country, str) else None, city, lat, lon)


class AddressBook:
    """Parses addresses and tells whether they are trusted and where they are, cached per address.

    Parsing uses the C inet_pton rather than the ipaddress module: ten times
    faster, and just as strict (no leading zeros, no prefixes, no zone ids).
    """

    def __init__(self, trusted_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network], geo: GeoDatabase | None = None):
        # (version, first, last) integer ranges: membership is two comparisons.
        self._trusted = tuple(
            (net.version, int(net.network_address), int(net.broadcast_address)) for net in trusted_networks
        )
        self._geo = geo
        self._cache: dict[str, Address | None] = {}

    def lookup(self, raw: str) -> Address | None:
        """The address facts, or None when `raw` is not an IP address."""
        try:
            return self._cache[raw]
        except KeyError:
            pass
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        address = self._cache[raw] = self._parse(raw)
        return address

    def close(self) -> None:
        if self._geo is not None:
            self._geo.close()

    def _parse(self, raw: str) -> Address | None:
        try:
            packed = socket.inet_pton(socket.AF_INET, raw)
        except OSError:
            try:
                packed = socket.inet_pton(socket.AF_INET6, raw)
            except OSError:
                return None
            if packed[:12] == _V4_MAPPED_PREFIX:  # ::ffff:a.b.c.d is the IPv4 host a.b.c.d
                packed = packed[12:]
        v4 = len(packed) == 4
        text = socket.inet_ntop(socket.AF_INET if v4 else socket.AF_INET6, packed)
        trusted = False
        if self._trusted:
            version, value = (4 if v4 else 6), int.from_bytes(packed, "big")
            trusted = any(v == version and first <= value <= last for v, first, last in self._trusted)
        geo = self._geo.locate(ipaddress.ip_address(packed)) if self._geo is not None else NO_GEO
        # inet binary: family (2 = IPv4, 3 = IPv6 in Postgres' numbering), bits, is_cidr, length, address.
        wire = (_INET4 if v4 else _INET6) + packed
        return Address(text, wire, trusted, geo)
