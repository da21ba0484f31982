#!/usr/bin/env bash
# The GPU check: ftcal's wgpu backend on a lent NVIDIA machine (no network, 15 minutes of device time
# for a whole session; /work/.library/device/README.md), against PyTorch on the same GPU. Every figure
# and every failure goes to $OUT/gpu_check.txt; a failing step is recorded and the next one runs. Each
# step has its own timeout and all of them together stop by 7.5 minutes (DEADLINE_S, plus a few seconds
# to kill a step that overruns).
#
# Build the binary here first (the machine has no Rust and no network; ~31 min cold on 2 cores):
#   CARGO_TARGET_DIR=/work/target-gpu cargo build --release -p ftcal --features wgpu
#   mkdir -p gpu-bin && strip -o gpu-bin/ftcal /work/target-gpu/release/ftcal && gzip -9f gpu-bin/ftcal
# Stripped, the binary is 86 MiB, over the 64 MiB a call may carry; gzipped 23 MiB, and this script
# unpacks gpu-bin/ftcal.gz to /tmp (an unpacked gpu-bin/ftcal is used as it is). gpu-bin/ is ignored by
# git and travels only when named in `carry`. If the machine lacks the Vulkan loader
# (`ldconfig -p | grep libvulkan` empty there), also bring it as the device README says, into .gl/
# (ignored too):
#   mkdir -p .gl /tmp/amd64/partial; o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64
#   -oDir::State::Lists=/tmp/amd64'; apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
# Then, through the device tool's `run`, from the repository root:
#   command: bash scripts/gpu_check.sh      carry: ["gpu-bin", ".gl"]      timeout_s: 540
# and read files_at/gpu_check.txt (plus the JSON records beside it).
#
# Steps: nvidia-smi; the Vulkan loader and driver (vulkaninfo --summary where installed); `ftcal models
# bench-train` of ResNet-50, batch 64 at 224x224, on wgpu; scripts/bench_torch_train.py with the same
# settings on CUDA, with PyTorch's default TF32 convolutions and with --no-tf32 (burn's wgpu kernels are
# strict float32); `ftcal run configs/quickstart.toml --set backend=wgpu`, then configs/quickstart-ht.toml
# (Holistic Transfer); the quickstart stopped by SIGTERM inside a fine-tuning epoch and resumed
# (scripts/gpu_resume_check.sh), with whatever time is left.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.txt
BIN=${FTCAL_BIN:-gpu-bin/ftcal}
if [[ ! -x $BIN && -f gpu-bin/ftcal.gz && -z ${FTCAL_BIN:-} ]]; then
  BIN=/tmp/ftcal-gpu-check
  gzip -dc gpu-bin/ftcal.gz >"$BIN" && chmod +x "$BIN"
fi
DEADLINE_S=${DEADLINE_S:-450}
START=$(date +%s)
: >"$LOG"

note() { printf '%s\n' "$*" | tee -a "$LOG"; }

# step NAME LIMIT_S COMMAND...: runs COMMAND with its output in the log, under LIMIT_S or what is left
# before the deadline, whichever is less; records its exit status and time. Never stops the script.
step() {
  local name=$1 limit=$2 left rc began
  shift 2
  left=$((DEADLINE_S - ($(date +%s) - START)))
  ((left < limit)) && limit=$left
  if ((limit < 5)); then
    note "== $name: SKIPPED (the script's ${DEADLINE_S} s are used up)"
    return 1
  fi
  note "== $name (limit ${limit} s, $(date +%T))"
  note "\$ $*"
  began=$(date +%s.%N)
  timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  local took
  took=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if ((rc == 124 || rc == 137)); then
    note "-- $name: TIMED OUT after ${took} s"
  elif ((rc != 0)); then
    note "-- $name: FAILED (exit $rc) after ${took} s"
  else
    note "-- $name: ok in ${took} s"
  fi
  return "$rc"
}

note "ftcal GPU check, $(date -u +%FT%TZ), $(uname -srm), $(nproc) CPUs"

step "nvidia-smi" 30 nvidia-smi

# Vulkan: wgpu needs the loader (libvulkan.so.1) and NVIDIA's driver manifest. Carried loader packages
# are unpacked only where the machine has none (unpacking others can break /, says the device README).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  if compgen -G '.gl/*.deb' >/dev/null; then
    note "== no Vulkan loader here: unpacking the carried .gl/*.deb"
    for deb in .gl/*.deb; do dpkg -x "$deb" / >>"$LOG" 2>&1 || note "-- cannot unpack $deb"; done
    ldconfig
  else
    note "== no Vulkan loader (libvulkan.so.1) here and none carried in .gl/: wgpu will find no adapter"
  fi
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -f $nvidia_icd ]] && ! grep -lqs nvidia /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; then
  # The driver is mounted outside the loader's search path on these machines.
  export VK_DRIVER_FILES=$nvidia_icd VK_ICD_FILENAMES=$nvidia_icd
  note "== VK_DRIVER_FILES=$nvidia_icd"
fi
note "$(ldconfig -p 2>/dev/null | grep libvulkan || echo 'libvulkan: not found')"
if command -v vulkaninfo >/dev/null; then
  step "vulkaninfo --summary" 30 vulkaninfo --summary
else
  note "== vulkaninfo: not installed (the adapter wgpu picks is named in the bench-train line below)"
fi

# The benchmarks first, the quickstart last: the figures to compare are the point of the lease, and the
# quickstart's length on a GPU is the least known, so it gets whatever time is left.
if [[ -x $BIN ]]; then
  note "$("$BIN" --version 2>&1)"
  step "ftcal bench-train resnet50 on wgpu" 200 \
    "$BIN" models bench-train --model resnet50 --backend wgpu --batch-size 64 --image-size 224 \
    --steps 100 --warmup 10 --json "$OUT/ftcal-resnet50.json"
else
  note "== $BIN: missing (build and carry it: see the top of this script); ftcal steps skipped"
fi

if python3 -c 'import torch' >/dev/null 2>&1; then
  torch_bench=(env PYTHONUNBUFFERED=1 python3 scripts/bench_torch_train.py --model resnet50 --batch-size 64
    --image-size 224 --steps 100 --warmup 10)
  step "PyTorch resnet50 (TF32 convolutions, PyTorch's default)" 60 \
    "${torch_bench[@]}" --json "$OUT/torch-resnet50.json"
  step "PyTorch resnet50 (--no-tf32, strict float32)" 60 \
    "${torch_bench[@]}" --no-tf32 --json "$OUT/torch-resnet50-fp32.json"
else
  note "== PyTorch: python3 cannot import torch here; no PyTorch figures"
fi

# run_quickstart NAME CONFIG LIMIT_S: the config on wgpu; its summary.json comes back (the device tool
# brings back at most 8 files from $OUT), its metrics.csv goes into the log, the rest (outputs,
# checkpoints, plots) stays in /tmp.
run_quickstart() {
  local name=$1 config=$2 limit=$3
  step "ftcal run $config on wgpu" "$limit" \
    "$BIN" run "$config" --set backend=wgpu --out "/tmp/$name.$$"
  mkdir -p "$OUT/$name"
  for file in summary.json metrics.csv; do
    if [[ -f /tmp/$name.$$/$file ]]; then
      note "-- $name/$file:"
      cat "/tmp/$name.$$/$file" >>"$LOG"
      echo >>"$LOG"
    fi
  done
  [[ -f /tmp/$name.$$/summary.json ]] && cp "/tmp/$name.$$/summary.json" "$OUT/$name/"
}

if [[ -x $BIN ]]; then
  run_quickstart quickstart-gpu configs/quickstart.toml 150
  # Holistic Transfer (frozen classifier, LOLSGD, distillation of the source model) on the GPU.
  run_quickstart quickstart-ht-gpu configs/quickstart-ht.toml 150
fi

if [[ -x $BIN ]]; then
  step "SIGTERM in the middle of a fine-tuning epoch on wgpu, then the same command" 180 \
    bash scripts/gpu_resume_check.sh "$BIN" "$OUT" wgpu
fi

note "== figures (images/s):"
for json in "$OUT"/ftcal-resnet50.json "$OUT"/torch-resnet50.json "$OUT"/torch-resnet50-fp32.json; do
  [[ -f $json ]] || continue
  note "$(python3 - "$json" 2>&1 <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
print("{}: {:.1f} images/s, median step {:.1f} ms, warm-up {:.1f} s, on {}".format(
    os.path.basename(sys.argv[1]), r["images_per_s"], r["step_ms_median"], r["warmup_seconds"], r["device"]))
PY
)"
done
note "== done in $(($(date +%s) - START)) s"
