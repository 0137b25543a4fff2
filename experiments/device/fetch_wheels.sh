#!/usr/bin/env bash
# Download the pure-Python wheels the lent GPU machine lacks (fvcore and its small deps) into
# .whl/ at the repo root (ignored by git; carried with `carry: [".whl"]`). Run here, not there.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
python3 -m pip download --no-deps -d .whl \
    fvcore==0.1.5.post20221221 iopath==0.1.10 yacs==0.1.8 termcolor==3.3.0
# fvcore ships as an sdist only: build a wheel so the device needs no build step.
cd .whl
for sdist in fvcore-*.tar.gz iopath-*.tar.gz; do
    [ -f "$sdist" ] || continue
    python3 -m pip wheel --no-deps -w . "$sdist" && rm -f "$sdist"
done
ls -la
