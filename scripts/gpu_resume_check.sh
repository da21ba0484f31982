#!/usr/bin/env bash
# A run on a GPU backend stopped by SIGTERM in the middle of a fine-tuning epoch, then resumed with the same
# command, as Slurm does at a time limit with --signal=TERM and --requeue. Checks the exit status (143),
# the checkpoint written inside the epoch, and that the resumed run finishes; prints both summaries.
# (On a GPU the numbers need not match an uninterrupted run bit for bit: autotuning may pick other kernels
# in another process. On the CPU they do, and tests/kill.rs checks that.)
#
#   bash scripts/gpu_resume_check.sh FTCAL_BINARY OUT_DIR [BACKEND]
#
# Writes only OUT_DIR/resume-summary.json (the run directory and logs stay in a temporary folder: the
# device tool brings back few files). scripts/gpu_check.sh runs it as its last step; it needs about two
# quickstarts' time (~70 s each on an H200 with wgpu).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?the ftcal binary}
OUT=${2:?a folder for the summary}
BACKEND=${3:-wgpu}
WORK=$(mktemp -d)
DIR=$WORK/run
mkdir -p "$OUT"
args=(run configs/quickstart.toml --set "backend=$BACKEND" --out "$DIR")

# Held by the test hook at the 30th fine-tuning iteration (epoch 3, iteration 3 of 9), then SIGTERM.
"$BIN" "${args[@]}" --pause-at "fine_tuning iteration#30" 2>"$WORK/first.log" &
pid=$!
for _ in $(seq 600); do
  grep -q "ftcal: paused at" "$WORK/first.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
kill -TERM "$pid"
wait "$pid"
first=$?
echo "first run: exit $first (143 expected); its last lines:"
tail -n 3 "$WORK/first.log"
echo "its checkpoint: $(tr -d ' \n' <"$DIR/checkpoints/fine_tuning/state.json" | grep -o '"partial_epoch":{[^}]*}')"

"$BIN" "${args[@]}" 2>"$WORK/second.log"
second=$?
echo "resumed run: exit $second (0 expected)"
grep -m1 "resuming at" "$WORK/second.log"
[[ -f $DIR/summary.json ]] && cp "$DIR/summary.json" "$OUT/resume-summary.json"
rm -rf "$WORK"
((first == 143 && second == 0))
