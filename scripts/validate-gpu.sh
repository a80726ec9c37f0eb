#!/usr/bin/env bash
# The GPU code under the Vulkan validation layer (Khronos, with synchronization validation,
# which wgpu turns on with it): the tests that cover every kernel and a training step of each
# network, then the binary's train, eval and predict of an MLP and a small CNN. With
# WGTRAIN_VALIDATION=1 any message of the layer is an error of the GPU operation after it, so a
# message fails a test or a command. Needs Debian's vulkan-validationlayers (installed by
# scripts/setup-debian.sh). `.ci/run` runs it; run it by hand the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
export WGTRAIN_VALIDATION=1 WGTRAIN_REQUIRE_GPU=1 WGTRAIN_TUNE=off
export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
profile=(--profile test --quiet)
cargo test "${profile[@]}" --test gpu_kernels --test gpu_training
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wgtrain() { cargo run "${profile[@]}" -- "$@"; }
for net in mlp cnn; do
  if [ "$net" = mlp ]; then
    layers=(--hidden 64)
  else
    layers=(--layers "conv 8 3 pad same, relu, maxpool 2, conv 8 3 stride 2, relu, avgpool 2, dense 32, relu, dropout 0.2, dense")
  fi
  wgtrain train --backend gpu --epochs 1 --batch-size 128 --quiet "${layers[@]}" \
    --save "$work/$net.safetensors"
  wgtrain eval --backend gpu --model "$work/$net.safetensors" >/dev/null
  wgtrain predict --backend gpu --model "$work/$net.safetensors" \
    --idx data/mnist-sample/t10k-images-idx3-ubyte.gz --range 0..300 >/dev/null
  echo "validation layer: $net train, eval and predict clean"
done
