#!/usr/bin/env bash
# The GPU measurements of the benchmark issue in one run, on a machine with an NVIDIA GPU and
# PyTorch but no Rust toolchain and no network (as the lent H200 is). On the build machine,
# from the repository root:
#
#   cargo build --release
#   mkdir -p .carry/fashion-mnist
#   strip -o .carry/wgtrain target/release/wgtrain
#   cp /usr/share/datasets/fashion-mnist/*.gz .carry/fashion-mnist/
#   mkdir -p .gl .apt-lists/partial
#   o="-oAPT::Architecture=amd64 -oDir::State::Lists=$PWD/.apt-lists"
#   apt-get $o update && (cd .gl && apt-get $o download libvulkan1)   # the Vulkan loader
#
# then, with .carry and .gl carried to the GPU machine, in the repository root there:
#
#   benches/gpu_lease.sh            # writes to $OUT, else ./gpu-results
#
# It prints the device, trains the standard model on the GPU (accuracy check), tunes the matmul
# kernels (`wgtrain tune`, its table kept), then runs `wgtrain bench --backend gpu` (standard MLP, CNN, wide MLP; dispatches, host time and
# workgroups per step) with PyTorch eager and PyTorch CUDA-graph peers on the same GPU in the
# same run, then the quick bench again with each matmul kernel forced (WGTRAIN_MATMUL_TILES),
# and by the rule of thumb with and without split-K (WGTRAIN_TUNE=off, WGTRAIN_MATMUL_SPLIT=1).
# Not yet run on a real GPU (none has been lent so far). LEASE_REHEARSAL=1 runs a shortened
# version anywhere (1 epoch, tuning at batch 128, quick benches, PyTorch on the CPU, only the
# 32x32 kernel forced), e.g. on lavapipe with WGTRAIN_BIN=target/release/wgtrain.
# Nothing here changes the GPU's settings.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=${WGTRAIN_BIN:-.carry/wgtrain}

# The Vulkan loader, unpacked from the carried .deb where the machine has none; the NVIDIA
# driver's ICD is already there.
if ! ldconfig -p | grep -q libvulkan.so.1; then
  for f in .gl/*.deb; do
    [ -e "$f" ] && dpkg -x "$f" /
  done
  ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
  export VK_DRIVER_FILES=$nvidia_icd
fi
export WGPU_BACKEND=vulkan PYTHONUNBUFFERED=1
# Every step tunes into, and reuses, the cache kept with the results.
export WGTRAIN_TUNE_CACHE=$out/matmul-tiles.json
if [ "${LEASE_REHEARSAL:-0}" = 1 ]; then
  epochs=1 quick=--quick tune_batches=128 peer=cpu kernels=32
else
  epochs=5 quick= tune_batches=128,1024 peer=cuda kernels="32 64 128"
fi
if [ -d .carry/fashion-mnist ]; then
  export WGTRAIN_FASHION_MNIST_DIR=$PWD/.carry/fashion-mnist
fi

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv \
  | tee "$out/device.txt"
"$bin" devices 2>&1 | tee -a "$out/device.txt" || { echo "wgtrain devices failed"; exit 1; }

echo "== train: standard model, Fashion-MNIST, $epochs epochs, batch 128, GPU"
"$bin" train --backend gpu --data fashion-mnist --epochs "$epochs" --batch-size 128 --json 2>&1 \
  | tee "$out/train.txt" || { echo "GPU training failed (above): no bench"; exit 1; }

echo "== tune: the matmul kernels on this GPU (the bench below uses the choices)"
"$bin" tune --batch-sizes "$tune_batches" 2>&1 | tee "$out/tune.txt"

echo "== bench: gpu vs PyTorch eager and CUDA graph"
peers=(--peer "python3 benches/peers/pytorch_peer.py --device $peer $quick")
if [ "$peer" = cuda ]; then
  peers+=(--peer "python3 benches/peers/pytorch_peer.py --device cuda --graph")
fi
"$bin" bench --backend gpu $quick "${peers[@]}" \
  --ratio "gpu,pytorch-$peer" --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"

# The matmul kernels against each other (the default picks per shape by tuning).
for tiles in $kernels; do
  echo "== bench: gpu with every matmul on ${tiles}x${tiles} tiles"
  WGTRAIN_MATMUL_TILES=$tiles "$bin" bench --backend gpu --quick \
    --json "$out/bench-tiles-$tiles.json" 2>&1 | tee "$out/bench-tiles-$tiles.txt"
done

# Split-K against none: the rule of thumb (tuning off, so the cache above is neither used nor
# overwritten), as it is and with every split forbidden.
for split in rule 1; do
  echo "== bench: gpu by the rule of thumb, split-K: $split"
  if [ "$split" = rule ]; then unset WGTRAIN_MATMUL_SPLIT; else export WGTRAIN_MATMUL_SPLIT=$split; fi
  WGTRAIN_TUNE=off "$bin" bench --backend gpu --quick \
    --json "$out/bench-rule-split-$split.json" 2>&1 | tee "$out/bench-rule-split-$split.txt"
done
unset WGTRAIN_MATMUL_SPLIT
