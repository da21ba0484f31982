#!/usr/bin/env bash
# Prepares what the `cuda` feature's build needs on a machine that cannot download cubecl's LLVM bundle
# (an offline cluster, this project's CI): Debian's LLVM 22 stands in for the bundle.
#
#   scripts/cuda_llvm.sh            # then: cargo build --release -p ftcal --features cuda
#
# cubecl-cuda depends on cubecl-llvm, whose build dependency tracel-llvm-bundler downloads a prebuilt LLVM
# into <data dir>/tracel/tracel-llvm-<version>/ unless that folder holds `.tracel-llvm-installed`; it then
# only runs the folder's bin/llvm-config. This script makes that folder from Debian's llvm-22-dev (with
# libpolly-22-dev, which the link needs, and libzstd-dev), the version read from Cargo.lock. Idempotent: a
# folder already installed, by the bundler itself or by an earlier run, is left as it is. On a machine that
# reaches the bundle's host none of this is needed: the build downloads it as designed.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(awk '/^name = "tracel-llvm-bundler"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ -z $version ]]; then
  echo "cuda_llvm: Cargo.lock has no tracel-llvm-bundler: nothing to prepare" >&2
  exit 0
fi
# The bundler's folder: dirs::data_local_dir() (XDG_DATA_HOME, else ~/.local/share) / tracel / tracel-llvm-<version>.
folder=${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-$version
if [[ -e $folder/.tracel-llvm-installed ]]; then
  echo "cuda_llvm: $folder is installed"
  exit 0
fi

llvm=/usr/lib/llvm-22
packages=(llvm-22-dev libpolly-22-dev libzstd-dev)
missing=()
[[ -x $llvm/bin/llvm-config ]] || missing+=(llvm-22-dev)
compgen -G "$llvm/lib/libPolly*.a" >/dev/null || missing+=(libpolly-22-dev)
compgen -G "/usr/lib/*/libzstd.so" >/dev/null || missing+=(libzstd-dev)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]]; then sudo=(); else sudo=(sudo -n); fi
  if command -v apt-get >/dev/null && { [[ $(id -u) == 0 ]] || sudo -n true 2>/dev/null; }; then
    echo "cuda_llvm: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  else
    echo "cuda_llvm: needs ${missing[*]} (Debian 12: bookworm-security); install them as root: apt-get install ${packages[*]}" >&2
    exit 1
  fi
fi

mkdir -p "$folder/bin"
ln -sfn "$llvm/include" "$folder/include"
ln -sfn "$llvm/lib" "$folder/lib"
# Debian's `llvm-config --system-libs` prints libz3 as a full path, which the bundler would turn into
# `-llibz3`; the wrapper prints it as `-lz3`.
cat >"$folder/bin/llvm-config" <<SH
#!/bin/sh
out=\$($llvm/bin/llvm-config "\$@") || exit \$?
printf '%s\n' "\$out" | sed 's#/[^ ]*/libz3\.so#-lz3#g'
SH
chmod +x "$folder/bin/llvm-config"
touch "$folder/.tracel-llvm-installed"
echo "cuda_llvm: $folder stands in for LLVM $version with $($llvm/bin/llvm-config --version) from Debian"
