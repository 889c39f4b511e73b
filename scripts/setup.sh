#!/usr/bin/env bash
# Set up everything registre needs on a fresh Debian machine with Python 3.11:
# Debian packages, the virtual environment, torch (CPU wheel first), the project,
# pyctcdecode and KenLM's lmplz/build_binary. Idempotent: reruns skip what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"

# 1. Debian packages (fonts for synthetic lines, KenLM build dependencies, ...).
mapfile -t PKGS < <(grep -v '^\s*#' scripts/apt-packages.txt | awk 'NF {print $1}')
MISSING=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${MISSING[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi

# 2. Virtual environment and Python packages. torch==2.13.0 goes first: it is a
# local CPU wheel, and any looser requirement pulls gigabytes of CUDA packages.
PYTHON="$(command -v python3.11 || command -v python3)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
"${PIP[@]}" install torch==2.13.0
"${PIP[@]}" install -e ".[dev]"
# pyctcdecode 0.5.0 declares numpy<2 but runs on numpy 2 (its dependencies are in pyproject).
"${PIP[@]}" install --no-deps pyctcdecode==0.5.0

# 3. KenLM's lmplz and build_binary (for `registre build-lm`).
if [ -f scripts/build_kenlm.sh ]; then
  bash scripts/build_kenlm.sh "$VENV"
fi
echo "setup: done ($VENV)"
