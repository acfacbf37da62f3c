#!/bin/sh
# Installs Debian's chromium and its driver for the console's browser tests, where
# missing. Skipped (with a note) where neither root nor apt-get is at hand: the
# browser tests then fail saying what to install, never pass silently.
set -e
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "console: install chromium and chromium-driver (Debian packages) to run the browser tests" >&2
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
