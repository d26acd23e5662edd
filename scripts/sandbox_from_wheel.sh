#!/usr/bin/env bash
# The sandbox from a wheel, as a site would install it: build the wheel from this checkout,
# install it into a fresh venv outside the repository (torch pinned, [airflow] extra), and run
# `dipro-fhir-sandbox up` from a folder outside the checkout with nothing of the checkout on
# sys.path; wait for the night the scheduler starts on its own, print its state and the
# RiskAssessments on HAPI, then `down --purge`. Exits non-zero if any step fails or the night
# does not succeed.
#
#   bash scripts/sandbox_from_wheel.sh [WORKDIR]     (default: a new folder under /tmp)
#
# Needs what scripts/install.sh sets up (Java, Maven's ~/.m2, Orthanc, PostgreSQL) and PyPI
# for the venv's packages (a few minutes the first time).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/dipro-wheel.XXXXXX)}"
TORCH_VERSION=2.13.0
NIGHT_TIMEOUT_S=900
say() { printf 'sandbox-from-wheel: %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$WORK"
say "work folder $WORK"

# 1. the wheel, from the checkout's tracked and new (not ignored) files only
rm -rf "$WORK/src" "$WORK/dist" && mkdir -p "$WORK/src"
(cd "$REPO_ROOT" && git ls-files -co --exclude-standard -z | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
  | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
"$REPO_ROOT/.venv/bin/pip" wheel -q --no-deps --no-build-isolation -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/dipro_fhir-*.whl)
say "built $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"

# 2. a fresh venv; the project's own wheel is reinstalled on every call
if [ ! -x "$WORK/venv/bin/python" ]; then
  python3.11 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q "torch==$TORCH_VERSION"
fi
echo "torch==$TORCH_VERSION" >"$WORK/constraints.txt"
"$WORK/venv/bin/pip" install -q -c "$WORK/constraints.txt" "$WHEEL[airflow]"
"$WORK/venv/bin/pip" install -q --no-deps --force-reinstall "$WHEEL"

# 3. from outside the checkout, with nothing of it on sys.path
cd "$WORK"
unset PYTHONPATH
"$WORK/venv/bin/python" - "$REPO_ROOT" <<'EOF'
import sys
from pathlib import Path
import dipro_fhir, dipro_fhir.sandbox.main  # noqa: E401
checkout = Path(sys.argv[1]).resolve()
where = Path(dipro_fhir.__file__).resolve()
assert checkout not in where.parents, f"dipro_fhir imported from the checkout: {where}"
assert not any(Path(p or ".").resolve() == checkout for p in sys.path), "checkout on sys.path"
assert "tests" not in sys.modules, "the test tree was imported"
print(f"sandbox-from-wheel: dipro_fhir from {where.parent}")
EOF
SANDBOX="$WORK/venv/bin/dipro-fhir-sandbox"
DB="dipro_wheel_$(date +%s)"
status=0
"$SANDBOX" --dir "$WORK/sandbox" up --hapi-port "$(free_port)" --orthanc-port "$(free_port)" \
  --airflow-port "$(free_port)" --results-db "$DB" --patients 8 || status=$?
if [ "$status" -eq 0 ]; then
  "$SANDBOX" --dir "$WORK/sandbox" status || status=$?
  say "waiting for the night the scheduler starts on its own (at most ${NIGHT_TIMEOUT_S} s)"
  deadline=$(( $(date +%s) + NIGHT_TIMEOUT_S ))
  state=none
  while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$("$SANDBOX" --dir "$WORK/sandbox" airflow dags list-runs dipro_nightly -o json 2>/dev/null \
      | python3 -c 'import json,sys; rows=[l for l in sys.stdin if l.startswith("[")]; runs=json.loads(rows[-1]) if rows else []; print(runs[0]["state"] if runs else "none")' \
      2>/dev/null || echo none)
    case "$state" in success|failed) break ;; esac
    sleep 15
  done
  say "tonight's run: $state"
  fhir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["urls"]["fhir"])' "$WORK/sandbox/sandbox.json" 2>/dev/null || true)
  if [ -n "$fhir" ]; then
    count=$(curl -s "$fhir/RiskAssessment?_summary=count" -H 'Cache-Control: no-cache' \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("total"))' || echo "?")
    say "RiskAssessments on HAPI: $count"
  fi
  [ "$state" = success ] || status=1
fi
"$SANDBOX" --dir "$WORK/sandbox" down --purge || status=$?
say "exit $status"
exit "$status"
