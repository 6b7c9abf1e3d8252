#!/usr/bin/env bash
# Does a killed stream resume to exactly the results of an uninterrupted one? Copies the shared
# stages of RUN twice, trains METHOD in both copies at once (1 thread each), `kill -9`s the first
# after K finished steps, starts it again, and compares the two method folders file by file.
#
#   bash scripts/kill_resume.sh RUN OUT METHOD K [l2emg train options…]
#   bash scripts/kill_resume.sh runs/default /tmp/kr esmoe 2 --profile default --set stream.max_subsets=4
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: kill_resume.sh RUN OUT METHOD K [train options]}; out=$2; method=$3; k=$4; shift 4
python=${PYTHON:-$PWD/.venv/bin/python}
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
rm -rf "$out"
for copy in killed straight; do
  mkdir -p "$out/$copy"
  for f in "$run"/*; do
    case $(basename "$f") in methods|previews) ;; *) cp -r "$f" "$out/$copy/" ;; esac
  done
done
cmd=(-m l2emg.cli train --method "$method" --split unseen --order 1 --no-progress "$@")
"$python" "${cmd[@]}" --run-dir "$out/straight" > "$out/straight.log" 2>&1 &
straight=$!
"$python" "${cmd[@]}" --run-dir "$out/killed" > "$out/killed-1.log" 2>&1 &
killed=$!
progress="$out/killed/methods/$method-unseen-o1/progress.json"
while kill -0 "$killed" 2>/dev/null; do
  if [ -f "$progress" ] && grep -q "\"finished_steps\": $k," "$progress"; then
    kill -9 "$killed"; echo "killed after step $k"; break
  fi
  sleep 1
done
wait "$killed" 2>/dev/null || true
"$python" "${cmd[@]}" --run-dir "$out/killed" > "$out/killed-2.log" 2>&1
wait "$straight"
"$python" scripts/compare_runs.py "$out/killed/methods" "$out/straight/methods"
