# Source on the lent GPU machine, from the repository root:  . experiments/device_env.sh
# Installs the carried wheels (.whl/, see /work/.library/device/README.md) into /tmp/site and makes
# qlite importable as the installed layout (qlite.simulators, qlite.classical) under /tmp/pkg.
set -e
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
rm -rf /tmp/pkg && mkdir -p /tmp/pkg
cp -r qlite /tmp/pkg/qlite && cp -r simulators /tmp/pkg/qlite/simulators && cp -r classical /tmp/pkg/qlite/classical
export PYTHONPATH=/tmp/pkg:/tmp/site
export PYTHONUNBUFFERED=1
set +e
