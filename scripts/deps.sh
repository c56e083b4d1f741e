#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages parley builds and tests with, if any is
# missing. Runs apt-get as root, or through sudo.
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libuv1-dev libssl-dev openssl libhttp-parser-dev libwslay-dev
      libprotobuf-c-dev protobuf-c-compiler libsodium-dev libjansson-dev
      libinih-dev libsqlite3-dev libcmocka-dev jq curl
      libsignal-protocol-c-dev)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
