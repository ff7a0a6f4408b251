#!/usr/bin/env bash
# The test command: installs what the suite needs (the Debian packages of the README's
# "real parts" and the Python packages), checks style and types, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real parts the integration tests use; a missing one makes its tests fail, never skip.
DEBIAN_PACKAGES=(nginx-light systemd desktop-file-utils dosfstools fusefat fuse3
    xvfb trayer xdotool imagemagick dunst dbus-daemon x11-utils fonts-dejavu-core libtk8.6
    lighttpd lighttpd-mod-webdav zip libglib2.0-bin shared-mime-info
    xfce4-panel xfconf gir1.2-ayatanaappindicator3-0.1 gir1.2-gtk-3.0
    libgirepository1.0-dev libcairo2-dev pkg-config)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
