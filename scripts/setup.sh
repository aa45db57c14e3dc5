#!/usr/bin/env bash
# Set up everything the app needs on a fresh Debian/Ubuntu machine: system libraries for Qt, a Python 3.11
# virtual environment in .venv with the app installed. `scripts/setup.sh --test` adds what the test suite
# needs (browser, virtual X server, Java/Maven for the Elasticsearch test server, test packages).
set -euo pipefail
cd "$(dirname "$0")/.."

WITH_TESTS=0
[[ "${1:-}" == "--test" ]] && WITH_TESTS=1
SUDO=""
[[ "$(id -u)" != 0 ]] && SUDO="sudo"

APT_APP=(libgl1 libegl1 libglib2.0-0 libxkbcommon0 libfontconfig1 libfreetype6 libdbus-1-3 fonts-dejavu-core
         libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0
         libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-xkb1 libx11-xcb1)
APT_TEST=(xvfb xauth chromium chromium-driver maven default-jdk-headless unzip curl procps util-linux binutils)
packages=("${APT_APP[@]}")
(( WITH_TESTS )) && packages+=("${APT_TEST[@]}")
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  echo "Installing system packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=69"
if (( WITH_TESTS )); then
  .venv/bin/python -m pip install -q -e '.[desktop,tensorflow,openvino,test]'
else
  .venv/bin/python -m pip install -q -e '.[desktop]'
fi
