#!/usr/bin/env bash
# External tools of the export and viewer tests (`make tools`; `make test` runs it first):
#   * Debian's blender + python3-numpy  — imports the GLB/OBJ headless (tests/test_export_clients.py)
#   * Debian's chromium                  — renders the offline viewer page (tests/test_viewer.py)
#   * node packages of scripts/js/       — the Khronos glTF validator, three.js, esbuild (package-lock.json)
# Idempotent: what is already there is not installed again. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v blender >/dev/null || need+=(blender)
command -v blender >/dev/null && [ -d /usr/lib/python3/dist-packages/numpy ] || need+=(python3-numpy)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "install_tools: not root and no sudo: cannot apt-get install ${need[*]}; the tests that need them will skip" >&2
            need=()
        fi
        SUDO="sudo"
    fi
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "install_tools: apt-get install ${need[*]}" >&2
    $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v npm >/dev/null; then
    echo "install_tools: npm is missing (apt-get install nodejs npm); the glTF validator tests will skip" >&2
    exit 0
fi
if [ ! -d scripts/js/node_modules/gltf-validator ] || [ scripts/js/package-lock.json -nt scripts/js/node_modules ]; then
    echo "install_tools: npm ci in scripts/js" >&2
    (cd scripts/js && npm ci --no-audit --no-fund --silent)
    touch scripts/js/node_modules
fi
echo "install_tools: blender $(blender --version 2>/dev/null | head -1 | cut -d' ' -f2), $(chromium --version 2>/dev/null), node $(node --version)" >&2
