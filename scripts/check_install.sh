#!/usr/bin/env bash
# psmexp as a user installs it: `pip install .` (not editable) into a fresh virtual environment, then the commands
# from a directory outside the checkout. The environment reuses the installed dependencies (--system-site-packages:
# torch etc. are not downloaded again) but its own psmexp, which the script checks.
#   bash scripts/check_install.sh            # CI runs it after the test suite
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/psmexp-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --progress-bar off --no-deps "$repo"
bin="$work/venv/bin"
mkdir "$work/elsewhere" && cd "$work/elsewhere"
installed=$("$bin/python" -c "import psmexp; print(psmexp.__file__)")
case "$installed" in
  "$work/venv/"*) echo "psmexp from $installed" ;;
  *) echo "check_install.sh: psmexp was imported from $installed, not from the new environment" >&2; exit 1 ;;
esac
"$bin/psmexp-train" hydra.run.dir=outputs/default            # the README's main command
"$bin/psmexp-report" outputs/default | tee "$work/report.txt"
grep -q "test/error" "$work/report.txt"
for preset in "$(dirname "$installed")"/conf/paper/*.yaml; do
  name=$(basename "$preset" .yaml)
  "$bin/psmexp-train" "paper=$name" --cfg job >/dev/null || { echo "check_install.sh: paper=$name --cfg job failed" >&2; exit 1; }
done
echo "every paper preset composes"
"$bin/psmexp-precompute" --help >/dev/null
"$bin/psmexp-generate" --help >/dev/null
"$bin/psmexp-pipeline" --help >/dev/null
echo "check_install.sh: the non-editable install works from $PWD"
