#!/usr/bin/env bash
# Prepares what scripts/gpu_check.sh carries to a GPU machine that has no Rust and no network (the device
# tool's, /work/.library/device/README.md), in folders git ignores; name both in the tool's `carry`:
#
#   gpu-bin/ftcal.xz    the release binary with flex, wgpu and cuda, stripped (154 MiB), then xz -9
#                       (28 MiB; gzip -9 gives 46): a call carries at most 64 MiB, the working tree included
#   gpu-bin/COMMIT      the commit it was built from, "-dirty" when the tree had changes
#   gpu-bin/cuda/nvvm/libdevice/libdevice.10.bc
#                       NVIDIA's libdevice from PyPI's nvidia-cuda-nvcc-cu12: cubecl-cuda links it into
#                       kernels that call exp, log, erf or tanh (softmax, cross-entropy, GELU), and looks for
#                       it under $CUDA_PATH; gpu_check.sh points CUDA_PATH here only where the machine has
#                       no CUDA toolkit of its own
#   .gl/*.deb           the Vulkan loader (Debian's libvulkan1), for a machine without one (wgpu)
#
#   scripts/gpu_bin.sh            build (cargo, release; cuda needs scripts/cuda_llvm.sh where cubecl's
#                                 LLVM bundle cannot be downloaded) and pack
#   FTCAL_BIN=PATH scripts/gpu_bin.sh    pack a binary built already
#
# Each part is made only when missing or older than its source; delete a file to make it again.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
if [[ -z ${FTCAL_BIN:-} ]]; then
  bash scripts/cuda_llvm.sh
  cargo build --release -p ftcal --features wgpu,cuda
  FTCAL_BIN=$target/release/ftcal
fi
mkdir -p gpu-bin
if [[ ! -f gpu-bin/ftcal.xz || $FTCAL_BIN -nt gpu-bin/ftcal.xz ]]; then
  # The binary must hold all three backends: gpu_check.sh compares them.
  for feature in cubecl-cuda cubecl-wgpu; do
    grep -aq "$feature" "$FTCAL_BIN" || { echo "$FTCAL_BIN: built without ${feature#cubecl-}" >&2; exit 1; }
  done
  strip -o gpu-bin/ftcal "$FTCAL_BIN"
  xz -9 -T0 -f gpu-bin/ftcal
  commit=$(git rev-parse HEAD)
  git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || commit+=-dirty
  echo "$commit" >gpu-bin/COMMIT
fi

libdevice=gpu-bin/cuda/nvvm/libdevice/libdevice.10.bc
if [[ ! -f $libdevice ]]; then
  wheels=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    --python-version 3.12 --implementation cp -d "$wheels" nvidia-cuda-nvcc-cu12
  mkdir -p "$(dirname "$libdevice")"
  unzip -p "$wheels"/nvidia_cuda_nvcc_cu12-*.whl nvidia/cuda_nvcc/nvvm/libdevice/libdevice.10.bc >"$libdevice"
  rm -rf "$wheels"
fi

if ! compgen -G '.gl/libvulkan1_*.deb' >/dev/null; then
  lists=$(mktemp -d)
  mkdir -p .gl "$lists/partial"
  apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${apt_options[@]}" update -qq
  (cd .gl && apt-get "${apt_options[@]}" download libvulkan1)
  rm -rf "$lists"
fi

ls -l gpu-bin/ftcal.xz "$libdevice" .gl/*.deb
echo "carried: $(du -cb gpu-bin .gl | tail -1 | cut -f1) bytes, plus the working tree \
($(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1) bytes); at most 67108864"
