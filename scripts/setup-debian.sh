#!/usr/bin/env bash
# What the tests need on Debian 12 (bookworm), installed exactly as CI installs it (`.ci/run`
# runs this script): Mesa's software Vulkan driver (lavapipe) from bookworm-backports, whose
# GPU tests run 3-5x faster than on bookworm's own mesa-vulkan-drivers 22.3 (which passes them
# too), the Fashion-MNIST data set for `--data fashion-mnist` and the reader tests, and the
# portability checks' tools: the Khronos Vulkan validation layer (`scripts/validate-gpu.sh`)
# and spirv-val (the test that translates every kernel to SPIR-V validates it).
# Run as root: `sudo scripts/setup-debian.sh`.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if ! grep -qs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/*; then
  src=/etc/apt/sources.list.d/debian.sources
  if [ -f "$src" ]; then
    # A copy of the main Debian entry (its first stanza: the same mirror and key) for backports.
    awk 'BEGIN{RS="";FS="\n"} NR==1 {print; exit}' "$src" \
      | sed 's/^Suites:.*/Suites: bookworm-backports/' > /etc/apt/sources.list.d/backports.sources
  else
    echo 'deb http://deb.debian.org/debian bookworm-backports main' \
      > /etc/apt/sources.list.d/backports.list
  fi
fi
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1
apt-get install -y -qq dataset-fashion-mnist vulkan-validationlayers spirv-tools
