"""`python -m services.console.assets`: fetches the pages' third-party scripts from the npm registry.

Each package is pinned by version and by the registry's sha512 integrity, and
only the files the pages load are kept, under static/vendor/ (not committed).
Run by `make install`; the pages are then served with no CDN and no network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity
    files: dict[str, str]  # path in the tarball -> name under static/vendor/

    @property
    def tarball_url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name}-{self.version}.tgz"


PACKAGES = (
    NpmPackage(
        "uplot", "1.6.32",
        "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
        {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js", "package/dist/uPlot.min.css": "uPlot.min.css",
         "package/LICENSE": "uPlot.LICENSE"},
    ),
)


def _verified(package: NpmPackage, data: bytes) -> bytes:
    algorithm, _, expected = package.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise RuntimeError(f"{package.tarball_url}: {algorithm} {actual} is not the pinned {expected}")
    return data


def _installed(package: NpmPackage) -> bool:
    stamp = VENDOR / f".{package.name}-{package.version}"
    return stamp.exists() and all((VENDOR / name).exists() for name in package.files.values())


def install(package: NpmPackage) -> None:
    if _installed(package):
        return
    with urllib.request.urlopen(package.tarball_url, timeout=60) as response:
        data = _verified(package, response.read())
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, name in package.files.items():
            extracted = tar.extractfile(member)
            if extracted is None:
                raise RuntimeError(f"{package.name}@{package.version} has no file {member}")
            (VENDOR / name).write_bytes(extracted.read())
    (VENDOR / f".{package.name}-{package.version}").touch()


def main() -> int:
    for package in PACKAGES:
        try:
            install(package)
        except (OSError, RuntimeError) as exc:
            print(f"console assets: {package.name}@{package.version}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
