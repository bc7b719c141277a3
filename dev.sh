#!/usr/bin/env bash
# The README's two set-up commands, for a fresh machine that has only Python 3.11:
#   ./dev.sh serve [mom serve flags]   create .venv and install mom if needed, then run a broker node
#   ./dev.sh test  [tox flags]         likewise (and Chromium for the browser tests, when missing and root with
#                                      apt), then run the whole test suite (lint, types, both transports)
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi

ensure_venv() {
  if [ ! -x .venv/bin/python ]; then
    echo "dev.sh: creating .venv with $python" >&2
    "$python" -m venv .venv
  fi
  # Reinstall whenever pyproject.toml changes (the stamp carries its hash).
  local stamp=".venv/.installed-$(sha1sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "dev.sh: installing mom and its dependencies into .venv (first run takes a minute)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip uv
    # uv installs the same packages as pip in a fraction of the time; tox-uv (in the dev extra) makes tox's own
    # environments use it too, which took a quarter of the suite's set-up time with pip.
    .venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev,bench]'
    rm -f .venv/.installed-*
    touch "$stamp"
  fi
}

ensure_chromium() {
  # The dashboard's browser tests drive the system Chromium (Debian's `chromium` package), never a browser
  # download. Install it when missing and we can (root with apt); otherwise those tests skip and say why.
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "dev.sh: installing Chromium for the browser tests (apt-get install chromium)" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
           { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; }; then
      echo "dev.sh: could not install chromium; the browser tests will skip" >&2
    fi
  else
    echo "dev.sh: chromium is not installed and this is not root with apt: the browser tests will skip" >&2
  fi
}

case "${1:-}" in
  serve)
    shift
    ensure_venv
    # A development node: open registration unless the caller says otherwise (`mom serve` defaults to off).
    MOM_OPEN_REGISTRATION=${MOM_OPEN_REGISTRATION:-true} exec .venv/bin/mom serve "$@"
    ;;
  test)
    shift
    ensure_venv
    ensure_chromium
    exec .venv/bin/tox "$@"
    ;;
  *)
    echo "usage: ./dev.sh serve [mom serve flags] | ./dev.sh test [tox flags]" >&2
    exit 2
    ;;
esac
