#!/usr/bin/env bash
# Regenerate tests/fixtures/eval/text_metrics.json (the text-metric oracle) with the pinned
# rouge-score and sacrebleu. Usage: scripts/reference/metrics_golden.sh [--out PATH]
# Environment: ANVIL_METRICS_VENV  the venv (default <repo>/build/metrics-venv; created here)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=ensure_venv.sh
source "$here/ensure_venv.sh"

ANVIL_METRICS_REQS=("rouge-score==0.1.2" "sacrebleu==2.4.3")
ensure_venv "${ANVIL_METRICS_VENV:-$repo/build/metrics-venv}" "${ANVIL_METRICS_REQS[@]}"

if (($# == 0)); then set -- --out "$repo/tests/fixtures/eval/text_metrics.json"; fi
exec "$ANVIL_VENV_PY" "$here/metrics_golden.py" "$@"
