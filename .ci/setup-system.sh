#!/usr/bin/env bash
# Installs the system packages the tests need: Mesa's software Vulkan driver (lavapipe) from
# bookworm-backports (3-5x faster than stock bookworm's), and the Fashion-MNIST data set.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ] && ! grep -q bookworm-backports "$src" /etc/apt/sources.list.d/* 2>/dev/null; then
  # A copy of the main Debian entry (the first stanza) with the backports suite.
  awk 'BEGIN{RS="";FS="\n"} NR==1 {print; exit}' "$src" \
    | sed 's/^Suites:.*/Suites: bookworm-backports/' > /etc/apt/sources.list.d/backports.sources
fi
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null \
  || apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
apt-get install -y -qq dataset-fashion-mnist >/dev/null
