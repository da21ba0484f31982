#!/usr/bin/env bash
# The GPU check: ftcal's two GPU backends, cuda and wgpu, on a lent NVIDIA machine (no Rust, no network,
# 15 minutes of device time for a whole session; /work/.library/device/README.md), against PyTorch on the
# same GPU. It first probes the machine in seconds, then runs, most wanted first, each step under its own
# timeout and all of them within DEADLINE_S (330 s: one rerun still fits in 15 minutes with two machine
# starts):
#
#   1. training throughput, batch 64 at 224x224, 30 steps after 5 warm-up (`ftcal models bench-train`;
#      scripts/bench_torch_train.py for PyTorch, TF32 convolutions as PyTorch's default): ResNet-50 on
#      cuda in f32 and bf16 and in PyTorch f32 and bf16 autocast; the same for ViT-B/16;
#   2. the quickstart on cuda (its numbers beside flex's, which the README prints);
#   3. ResNet-50 and ViT-B/16 on wgpu (f32; bf16 where the Vulkan driver has it), last: wgpu's warm-up
#      took 128 s for ResNet-50 on an H200;
#   4. with time left, the quickstart on cuda stopped by SIGTERM and resumed (scripts/gpu_resume_check.sh).
#
# Every figure goes to $OUT/figures.jsonl (one JSON record a line: each benchmark's, each run's summary),
# the log and a table of the figures to $OUT/gpu_check.txt: the two files that come back.
#
# Prepare the carried files here first (scripts/gpu_bin.sh: the binary, libdevice, the Vulkan loader),
# then, through the device tool's `run`, from the repository root:
#   command: bash scripts/gpu_check.sh      carry: ["gpu-bin", ".gl"]      timeout_s: 420
# A failing step is recorded and the next one runs; a step skipped for lack of time says so.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.txt
FIGURES=$OUT/figures.jsonl
BIN=${FTCAL_BIN:-gpu-bin/ftcal}
if [[ ! -x $BIN && -f gpu-bin/ftcal.xz && -z ${FTCAL_BIN:-} ]]; then
  BIN=/tmp/ftcal-gpu-check
  if command -v xz >/dev/null; then
    xz -dc gpu-bin/ftcal.xz >"$BIN"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
      gpu-bin/ftcal.xz >"$BIN"
  fi && chmod +x "$BIN"
fi
DEADLINE_S=${DEADLINE_S:-330}
STEPS=${STEPS:-30}
WARMUP=${WARMUP:-5}
START=$(date +%s)
SCRATCH=$(mktemp -d)
: >"$LOG"
: >"$FIGURES"

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

# record JSON_FILE KEY=VALUE...: appends the file's JSON object to figures.jsonl, on one line, with the
# given fields added (what it is, how the step ended).
record() {
  local file=$1
  shift
  [[ -f $file ]] || return 0
  python3 - "$file" "$@" >>"$FIGURES" 2>>"$LOG" <<'PY'
import json, sys
record = json.load(open(sys.argv[1]))
for field in sys.argv[2:]:
    key, _, value = field.partition("=")
    record[key] = value
print(json.dumps(record, sort_keys=True))
PY
}

note "ftcal GPU check, $(date -u +%FT%TZ), $(uname -srm), $(nproc) CPUs"

# ---- The probe: seconds, before anything heavy.
step "nvidia-smi" 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
note "CUDA (driver): $(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' || echo unknown)"

# cubecl-cuda's kernels that call exp/log/erf/tanh link NVIDIA's libdevice, looked up under $CUDA_PATH,
# then /usr/local/cuda, /opt/cuda, /usr/lib/cuda, /usr. The carried copy is used only where none is found.
libdevice=""
for root in ${CUDA_PATH:-} /usr/local/cuda /opt/cuda /usr/lib/cuda /usr; do
  if [[ -f $root/nvvm/libdevice/libdevice.10.bc ]]; then
    libdevice=$root/nvvm/libdevice/libdevice.10.bc
    break
  fi
done
if [[ -z $libdevice && -f gpu-bin/cuda/nvvm/libdevice/libdevice.10.bc ]]; then
  export CUDA_PATH=$PWD/gpu-bin/cuda
  libdevice="$CUDA_PATH/nvvm/libdevice/libdevice.10.bc (carried)"
fi
note "libdevice: ${libdevice:-NOT FOUND (cuda kernels with exp/log will fail; run scripts/gpu_bin.sh and carry gpu-bin)}"
note "nvcc: $(command -v nvcc >/dev/null && nvcc --version | tail -1 || echo 'not installed (not needed)')"

# Vulkan: wgpu needs the loader (libvulkan.so.1) and NVIDIA's driver manifest. Carried loader packages
# are unpacked only where the machine has none (unpacking others can break /, says the device README).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  if compgen -G '.gl/libvulkan1_*.deb' >/dev/null; then
    note "Vulkan loader: none here; unpacking the carried .gl/libvulkan1_*.deb"
    for deb in .gl/libvulkan1_*.deb; do dpkg -x "$deb" / >>"$LOG" 2>&1 || note "-- cannot unpack $deb"; done
    ldconfig
  else
    note "Vulkan loader: none here and none carried in .gl/: wgpu will find no adapter"
  fi
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -f $nvidia_icd ]] && ! grep -lqs nvidia /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; then
  # The driver is mounted outside the loader's search path on these machines.
  export VK_DRIVER_FILES=$nvidia_icd VK_ICD_FILENAMES=$nvidia_icd
fi
note "Vulkan: $(ldconfig -p 2>/dev/null | grep -o 'libvulkan\.so\.1 ' | head -1 || true)ICD ${VK_DRIVER_FILES:-$(ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | tr '\n' ' ')}"

torch=no
if timeout 60 python3 -c 'import torch, torchvision, timm' >/dev/null 2>&1; then
  torch=yes
  note "PyTorch: $(timeout 60 python3 -c 'import torch, torchvision, timm; print("torch", torch.__version__,
    "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), "GPU", torch.cuda.is_available(),
    "torchvision", torchvision.__version__, "timm", timm.__version__)' 2>&1)"
else
  note "PyTorch: python3 cannot import torch, torchvision and timm here; no PyTorch figures"
fi
if [[ -x $BIN ]]; then
  note "ftcal: $("$BIN" --version 2>&1), built from $(cat gpu-bin/COMMIT 2>/dev/null || echo 'an unknown commit')"
else
  note "ftcal: $BIN missing (run scripts/gpu_bin.sh and carry gpu-bin); ftcal steps skipped"
fi
note "== probe done in $(($(date +%s) - START)) s"

# bench BACKEND MODEL PRECISION LIMIT_S: one `ftcal models bench-train` and its record.
bench() {
  local backend=$1 model=$2 precision=$3 limit=$4
  [[ -x $BIN ]] || return 0
  local json=$SCRATCH/ftcal-$backend-$model-$precision.json
  step "ftcal $model on $backend, $precision" "$limit" \
    "$BIN" models bench-train --model "$model" --backend "$backend" --precision "$precision" \
    --batch-size 64 --image-size 224 --steps "$STEPS" --warmup "$WARMUP" --json "$json"
  record "$json" "exit=$?"
}

# torch_bench MODEL PRECISION LIMIT_S: scripts/bench_torch_train.py with the same settings.
torch_bench() {
  local model=$1 precision=$2 limit=$3
  [[ $torch == yes ]] || return 0
  local json=$SCRATCH/torch-$model-$precision.json flags=()
  [[ $precision == bf16 ]] && flags=(--bf16)
  step "PyTorch $model, $precision" "$limit" \
    env PYTHONUNBUFFERED=1 python3 scripts/bench_torch_train.py --model "$model" --batch-size 64 \
    --image-size 224 --steps "$STEPS" --warmup "$WARMUP" "${flags[@]}" --json "$json"
  record "$json" "exit=$?"
}

# quickstart NAME BACKEND LIMIT_S: configs/quickstart.toml on BACKEND; its summary.json is recorded and
# its metrics.csv goes into the log (the run directory stays in the scratch folder).
quickstart() {
  local name=$1 backend=$2 limit=$3
  [[ -x $BIN ]] || return 0
  local dir=$SCRATCH/$name
  step "ftcal run configs/quickstart.toml on $backend" "$limit" \
    "$BIN" run configs/quickstart.toml --set "backend=$backend" --out "$dir"
  local rc=$?
  [[ -f $dir/metrics.csv ]] && { note "-- $name/metrics.csv:"; cat "$dir/metrics.csv" >>"$LOG"; }
  [[ -f $dir/summary.json ]] && record "$dir/summary.json" "record=run" "name=$name" "backend=$backend" "exit=$rc"
}

for model in resnet50 vit_base_patch16_224; do
  bench cuda "$model" f32 90
  bench cuda "$model" bf16 60
  torch_bench "$model" f32 45
  torch_bench "$model" bf16 45
done
quickstart quickstart-cuda cuda 120
for model in resnet50 vit_base_patch16_224; do
  bench wgpu "$model" f32 180
done
bench wgpu resnet50 bf16 60
if [[ -x $BIN ]]; then
  step "SIGTERM in the middle of a fine-tuning epoch on cuda, then the same command" 180 \
    bash scripts/gpu_resume_check.sh "$BIN" "$SCRATCH" cuda
  record "$SCRATCH/resume-summary.json" "record=run" "name=resume-cuda" "backend=cuda"
fi

note "== figures (training, batch 64 at 224x224, $STEPS steps after $WARMUP warm-up):"
python3 - "$FIGURES" >>"$LOG" 2>&1 <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| model | framework | backend | precision | images/s | median step ms | warm-up s |")
print("|---|---|---|---|---:|---:|---:|")
for r in rows:
    if "images_per_s" in r:
        print("| {} | {} | {} | {} | {:.1f} | {:.1f} | {:.1f} |".format(
            r["model"], r["framework"].split(" (")[0], r["backend"], r.get("precision", "f32"),
            r["images_per_s"], r["step_ms_median"], r["warmup_seconds"]))
for r in rows:
    if r.get("record") == "run":
        def acc(*path):
            value = r
            for key in path:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            return "{:.2f}".format(value) if isinstance(value, (int, float)) else "-"
        print("{} ({}): pre-trained Y/Y {} U/Y {}; fine-tuned Y/Y {} U/Y {}; ALG Y/Y {} U/Y {}; PCV Y/Y {} U/Y {}; "
              "γ* Y/Y {}".format(r["name"], r.get("status"), acc("pretrained", "acc", "Y/Y"),
              acc("pretrained", "acc", "U/Y"), acc("finetuned", "acc", "Y/Y"), acc("finetuned", "acc", "U/Y"),
              acc("calibrated", "alg", "acc", "Y/Y"), acc("calibrated", "alg", "acc", "U/Y"),
              acc("calibrated", "pcv", "acc", "Y/Y"), acc("calibrated", "pcv", "acc", "U/Y"),
              acc("calibrated", "oracle", "acc", "Y/Y")))
# flex's figures, from the README (2 CPU threads): what the quickstart on cuda is read against.
print("quickstart on flex (README): pre-trained Y/Y 50.28 U/Y 50.56; fine-tuned Y/Y 49.35 U/Y 0.00; "
      "ALG Y/Y 69.20 U/Y 40.52; PCV Y/Y 69.76 U/Y 73.61; γ* Y/Y 78.66")
PY
tail -n +"$(grep -n '^== figures' "$LOG" | tail -1 | cut -d: -f1)" "$LOG"
note "== done in $(($(date +%s) - START)) s"
