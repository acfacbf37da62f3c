"""Trusted source networks: the one check every profile that looks at addresses makes
(README: "Trusted networks")."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from services.profiles.kinds.params import Param, cidrs
from services.profiles.records import EventRecord

# The profile parameter, declared once for every kind that honours trusted networks.
TRUSTED_NETWORKS = Param(
    "trusted_networks", cidrs, [],
    "source networks (offices, VPN exits, proxies) this profile leaves out, besides the ones ingest marks "
    "trusted (UEBA_TRUSTED_NETWORKS)",
)


class TrustedNetworks:
    """A set of networks an address is tested against."""

    def __init__(self, networks: list[str] | tuple[str, ...]):
        self._nets = tuple(ipaddress.ip_network(n) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._nets)

    def __contains__(self, address: str | None) -> bool:
        if not address or not self._nets:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == net.version and ip in net for net in self._nets)


class SourceTrust:
    """Whether an event came from a trusted network: marked so by ingest, or inside one of the
    profile's own `trusted_networks`. Verdicts are cached per address (addresses repeat)."""

    def __init__(self, networks: list[str] | tuple[str, ...]):
        self._networks = TrustedNetworks(networks)
        self._verdicts: dict[str, bool] = {}

    def __call__(self, e: EventRecord) -> bool:
        if e.trusted_source:
            return True
        address = e.source_ip
        if not address or not self._networks:
            return False
        verdict = self._verdicts.get(address)
        if verdict is None:
            if len(self._verdicts) >= 65536:
                self._verdicts.clear()
            verdict = self._verdicts[address] = address in self._networks
        return verdict


@lru_cache(maxsize=65536)  # every located event asks; parsing an address costs more than the rest of its visit
def network_of(address: str | None) -> str | None:
    """The network an address stands for when a user's usual places are learned: its /24 (IPv4)
    or /48 (IPv6), so a VPN or ISP pool handing out neighbouring addresses is one place."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
