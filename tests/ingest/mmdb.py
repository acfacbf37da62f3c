"""A tiny MaxMind DB (.mmdb) writer for tests: IPv4 networks -> GeoIP2-City-shaped records.

Follows the MaxMind DB format 2.0: a binary search tree of 24-bit records over
the address bits, 16 zero bytes, a data section, then the metadata marker and
map. Only the types our records need are encoded (map, string, double,
unsigned ints, array).
"""

from __future__ import annotations

import ipaddress
import struct
import time
from pathlib import Path
from typing import Any

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(type_number: int, size: int) -> bytes:
    """Control byte(s): type in the top 3 bits (0 + extension byte for types > 7), then the size."""
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        size_bits, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_number <= 7:
        return bytes([(type_number << 5) | size_bits]) + extra
    return bytes([size_bits, type_number - 7]) + extra


class Uint:
    """An unsigned integer of a given MaxMind type (5 uint16, 6 uint32, 9 uint64): readers such as
    libmaxminddb insist on the exact type of each metadata field."""

    def __init__(self, value: int, type_number: int):
        self.value = value
        self.type_number = type_number


def encode(value: Any) -> bytes:
    if isinstance(value, Uint):
        raw = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big")
        return _control(value.type_number, len(raw)) + raw
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not needed here")
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        type_number = 5 if value < 2**16 else 6 if value < 2**32 else 9
        return _control(type_number, len(raw)) + raw
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def write_mmdb(path: Path, networks: dict[str, dict], database_type: str = "GeoIP2-City") -> Path:
    """Writes an IPv4 database mapping each CIDR in `networks` to its record."""
    data = bytearray()
    root: list = [None, None]
    for cidr, record in networks.items():
        net = ipaddress.ip_network(cidr)
        if net.version != 4:
            raise ValueError("IPv4 networks only")
        offset = len(data)
        data += encode(record)
        node = root
        bits = int(net.network_address)
        for depth in range(net.prefixlen):
            bit = (bits >> (31 - depth)) & 1
            if depth == net.prefixlen - 1:
                node[bit] = ("data", offset)
            else:
                if not isinstance(node[bit], list):
                    node[bit] = [None, None]
                node = node[bit]

    nodes: list[list] = []
    index: dict[int, int] = {}
    queue = [root]
    while queue:  # breadth first: the root is node 0
        node = queue.pop(0)
        index[id(node)] = len(nodes)
        nodes.append(node)
        queue.extend(child for child in node if isinstance(child, list))
    count = len(nodes)

    def record(child) -> int:
        if child is None:
            return count  # "no data"
        if isinstance(child, list):
            return index[id(child)]
        return count + 16 + child[1]

    tree = b"".join(record(n[0]).to_bytes(3, "big") + record(n[1]).to_bytes(3, "big") for n in nodes)
    metadata = {
        "node_count": Uint(count, 6),
        "record_size": Uint(24, 5),
        "ip_version": Uint(4, 5),
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": Uint(2, 5),
        "binary_format_minor_version": Uint(0, 5),
        "build_epoch": Uint(int(time.time()), 9),
        "description": {"en": "UEBA test database"},
    }
    path.write_bytes(tree + bytes(16) + bytes(data) + _METADATA_MARKER + encode(metadata))
    return path


def city_record(country: str, city: str, latitude: float, longitude: float) -> dict:
    return {
        "city": {"names": {"en": city}},
        "country": {"iso_code": country, "names": {"en": country}},
        "location": {"latitude": latitude, "longitude": longitude},
    }
