#!/usr/bin/env bash
# Build KenLM's lmplz and build_binary from the kenlm source package on PyPI and
# install them into VENV/bin (default .venv). Idempotent: does nothing when both
# binaries are already there and run.
#
#   bash scripts/build_kenlm.sh [VENV]
#
# Needs the Debian packages of scripts/apt-packages.txt (cmake, g++, Boost
# program-options/system/thread/test, Eigen, zlib, bz2, lzma). The kenlm wheel
# installed by pip holds only the Python query module; the estimator and the
# binary-format builder come from the same sdist (~30 s with make -j2).
set -euo pipefail

VENV="${1:-.venv}"
KENLM_VERSION="${KENLM_VERSION:-0.3.0}"
JOBS="${JOBS:-2}"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "build_kenlm.sh: $VENV/bin/python not found; create the virtualenv first" >&2
    exit 1
fi
VENV="$(cd "$VENV" && pwd)"

have_binaries() {
    [[ -x "$VENV/bin/lmplz" && -x "$VENV/bin/build_binary" ]] || return 1
    # A binary copied from another machine may miss its Boost libraries: check it runs.
    # Both print their usage and exit 1 when asked for help: check the text, not the status.
    local usage
    usage="$("$VENV/bin/lmplz" --help 2>&1 || true)"
    [[ "$usage" == *"--order"* ]] || return 1
    usage="$("$VENV/bin/build_binary" 2>&1 || true)"
    [[ "$usage" == *"Usage"* ]] || return 1
}

if have_binaries; then
    echo "build_kenlm.sh: lmplz and build_binary already in $VENV/bin"
    exit 0
fi

for tool in cmake make g++; do
    command -v "$tool" >/dev/null || { echo "build_kenlm.sh: $tool missing (install scripts/apt-packages.txt)" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kenlm-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "build_kenlm.sh: fetching the kenlm==$KENLM_VERSION source package"
# --no-binary kenlm (not :all:, which would also compile kenlm's build requirement
# cmake from source), --no-build-isolation so preparing the sdist's metadata uses
# the venv's setuptools instead of installing build requirements.
"$VENV/bin/python" -m pip download --quiet --no-deps --no-binary kenlm --no-build-isolation \
    --dest "$WORK" "kenlm==$KENLM_VERSION" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
SDIST="$(ls "$WORK"/kenlm-*.tar.gz | head -n 1)"
tar -xzf "$SDIST" -C "$WORK"
SRC="$(find "$WORK" -maxdepth 1 -mindepth 1 -type d -name 'kenlm*' | head -n 1)"
[[ -f "$SRC/CMakeLists.txt" ]] || { echo "build_kenlm.sh: no CMakeLists.txt in $SDIST" >&2; exit 1; }

echo "build_kenlm.sh: building lmplz and build_binary in $WORK/build"
mkdir -p "$WORK/build"
(
    cd "$WORK/build"
    cmake -DCMAKE_BUILD_TYPE=Release "$SRC" >cmake.log 2>&1 || { cat cmake.log >&2; exit 1; }
    make -j"$JOBS" lmplz build_binary >make.log 2>&1 || { tail -n 40 make.log >&2; exit 1; }
)

install -m 0755 "$WORK/build/bin/lmplz" "$VENV/bin/lmplz"
install -m 0755 "$WORK/build/bin/build_binary" "$VENV/bin/build_binary"
have_binaries || { echo "build_kenlm.sh: installed binaries do not run" >&2; exit 1; }
echo "build_kenlm.sh: installed $VENV/bin/lmplz and $VENV/bin/build_binary"
