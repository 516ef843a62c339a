#!/usr/bin/env bash
# Creates .venv/trl, the virtual environment of the TRL cross-check (benchmarks/trl_crosscheck.py), and installs
# benchmarks/requirements-trl.txt into it. It sees the book's .venv (torch, numpy, the installed `solutions`...)
# through a .pth file that adds .venv's site-packages with site.addsitedir (so .venv's own .pth files, the editable
# install of the book's packages among them, are read too): nothing is installed twice and .venv is left unchanged.
# Run `make setup` first (it creates .venv). Installs again only when requirements-trl.txt has changed.
#   bash benchmarks/trl_venv.sh && .venv/trl/bin/python benchmarks/trl_crosscheck.py
set -euo pipefail
cd "$(dirname "$0")/.."
main=.venv
trl=.venv/trl
if [ ! -x "$main/bin/python" ]; then
  echo "$main/bin/python not found: run 'make setup' first" >&2
  exit 1
fi
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
test -x "$trl/bin/python" || "$main/bin/python" -m venv --without-pip "$trl"
main_site=$("$main/bin/python" -c "$purelib")
echo "import site; site.addsitedir('$main_site')" > "$("$trl/bin/python" -c "$purelib")/book-venv.pth"
if ! cmp -s benchmarks/requirements-trl.txt "$trl/.installed"; then
  # pip is .venv's, found through the .pth file; it installs into .venv/trl (sys.prefix)
  "$trl/bin/python" -m pip install --disable-pip-version-check --no-compile -q -r benchmarks/requirements-trl.txt
  cp benchmarks/requirements-trl.txt "$trl/.installed"
fi
