#!/usr/bin/env bash
# Did a change alter any result? Runs the tiny profile (shared stages + every method registered at
# REV, on the Unseen stream, order 1) on the tree at REV and on the tree at NEW (default: the working
# tree), with the same thread count, then compares the two run folders file by file
# (scripts/compare_runs.py).
#
#   bash scripts/same_results.sh REV [NEW] [OUT_DIR]    e.g. bash scripts/same_results.sh HEAD~3
#
# About 5 minutes per tree on 2 idle cores (THREADS=1 for a busy machine). Exit code 0 when identical.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: same_results.sh REV [NEW] [OUT_DIR]}
new=${2:-}
out=${3:-$(mktemp -d)}
python=${PYTHON:-$PWD/.venv/bin/python}
mkdir -p "$out"
rm -rf "$out/before-tree" "$out/after-tree" "$out/before" "$out/after"
git worktree add --detach -f "$out/before-tree" "$rev" >/dev/null
after_tree=$PWD
if [ -n "$new" ]; then
  git worktree add --detach -f "$out/after-tree" "$new" >/dev/null
  after_tree=$out/after-tree
fi
trap 'git worktree remove --force "$out/before-tree" >/dev/null 2>&1 || true;
      git worktree remove --force "$out/after-tree" >/dev/null 2>&1 || true' EXIT
methods=$(PYTHONPATH="$out/before-tree/src" "$python" -c "from l2emg.continual.methods import METHODS; print(' '.join(METHODS))")

run_tree() {  # $1 = source tree, $2 = run folder
  (cd "$1" && export PYTHONPATH="$1/src" OMP_NUM_THREADS=${THREADS:-2} HF_HUB_OFFLINE=1
   "$python" -m l2emg.cli run --profile tiny --run-dir "$2" --no-progress --no-stream
   for m in $methods; do
     "$python" -m l2emg.cli train --method "$m" --split unseen --order 1 --profile tiny --run-dir "$2" --no-progress
   done) > "$2.log" 2>&1
}

echo "running $rev in $out/before …"
run_tree "$out/before-tree" "$out/before"
echo "running ${new:-the working tree} in $out/after …"
run_tree "$after_tree" "$out/after"
"$python" scripts/compare_runs.py "$out/before" "$out/after"
