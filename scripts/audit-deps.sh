#!/usr/bin/env bash
# Audit the pinned dependencies for known vulnerabilities with pip-audit.
#
#   scripts/audit-deps.sh [--allow-unaudited] [LOCK_FILE ...]
#
# Audits requirements.lock and requirements-dev.lock by default, exactly as pinned
# (--no-deps --disable-pip: no resolver, no throwaway venv), against PyPI's advisory data
# (pip-audit's default `pypi` service: https://pypi.org/pypi/NAME/VERSION/json).
#
# Exit codes:
#   0  every pin was looked up and none has a known vulnerability
#   1  a pin has a known vulnerability (listed with the versions that fix it)
#   2  usage error, or pip-audit is not installed
#   3  the audit is incomplete: pip-audit failed, or the service could not tell for some pins
#      (unreachable, or it answered "not found", as a registry mirror without the per-version
#      JSON API does). With --allow-unaudited (or AUDIT_ALLOW_UNAUDITED=1) this is a loud
#      warning and exit 0 instead: for machines that cannot reach the service. A known
#      vulnerability still fails.
#
# PIP_AUDIT and PYTHON override the tools (default: the project's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

allow_unaudited=${AUDIT_ALLOW_UNAUDITED:-0}
locks=()
for arg in "$@"; do
    case "$arg" in
        --allow-unaudited) allow_unaudited=1 ;;
        -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "audit-deps: unknown option $arg" >&2; exit 2 ;;
        *) locks+=("$arg") ;;
    esac
done
[ ${#locks[@]} -gt 0 ] || locks=(requirements.lock requirements-dev.lock)

pip_audit=${PIP_AUDIT:-.venv/bin/pip-audit}
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
if ! command -v "$pip_audit" >/dev/null 2>&1; then
    echo "audit-deps: $pip_audit not found; install the dev pins (make) or set PIP_AUDIT" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for lock in "${locks[@]}"; do
    if [ ! -f "$lock" ]; then
        echo "audit-deps: no such lock file: $lock" >&2
        exit 2
    fi
    report="$work/$(basename "$lock").json"
    set +e
    "$pip_audit" --no-deps --disable-pip --requirement "$lock" --vulnerability-service pypi \
        --format json --output "$report" --progress-spinner off --timeout 30 \
        2>"$work/stderr.log"
    audit_rc=$?
    set -e
    # Judge by the report, not by pip-audit's exit code alone: pip-audit exits 0 when it
    # could look up nothing at all ("Dependency not found on PyPI").
    set +e
    "$python" - "$lock" "$report" "$audit_rc" "$work/stderr.log" <<'PY'
import json
import sys
from pathlib import Path

lock, report, audit_rc, stderr = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if not report.is_file() or not report.read_text().strip():
    print(f"{lock}: pip-audit failed (exit {audit_rc}) and wrote no report:")
    print("".join(f"    {line}" for line in Path(stderr).read_text().splitlines(True)[-10:]))
    sys.exit(3)
deps = json.loads(report.read_text())["dependencies"]
vulnerable = [d for d in deps if d.get("vulns")]
skipped = [d for d in deps if "skip_reason" in d]
audited = len(deps) - len(skipped)
for dep in vulnerable:
    for vuln in dep["vulns"]:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
        aliases = ", ".join(vuln.get("aliases") or [])
        also = f" ({aliases})" if aliases else ""
        print(f"{lock}: VULNERABLE {dep['name']}=={dep['version']}: {vuln['id']}{also}; "
              f"fixed in {fixes}")
print(f"{lock}: {audited} of {len(deps)} pins audited, "
      f"{sum(len(d['vulns']) for d in vulnerable)} known vulnerabilities")
if skipped:
    print(f"{lock}: NOT AUDITED ({len(skipped)}): the vulnerability service could not tell:")
    for dep in skipped[:5]:
        print(f"    {dep['skip_reason']}")
    if len(skipped) > 5:
        print(f"    ... and {len(skipped) - 5} more")
sys.exit(1 if vulnerable else 3 if skipped or audit_rc not in (0, 1) else 0)
PY
    rc=$?
    set -e
    if [ "$rc" -eq 1 ]; then
        status=1
    elif [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=3
    fi
done

if [ "$status" -eq 3 ]; then
    if [ "$allow_unaudited" = 1 ]; then
        echo "audit-deps: WARNING: the audit is INCOMPLETE (see above); passing only because" \
            "--allow-unaudited was given. Run it where pypi.org's JSON API answers."
        exit 0
    fi
    echo "audit-deps: the audit is incomplete (see above): exit 3." \
        "Use --allow-unaudited only where the service cannot be reached."
fi
exit "$status"
