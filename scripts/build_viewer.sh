#!/usr/bin/env bash
# Regenerate facetwin/viewer/assets/three-bundle.min.js (three.js + GLTFLoader + OrbitControls as one
# offline script for `facetwin view`) from the npm packages pinned in scripts/js/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d scripts/js/node_modules/three ] || (cd scripts/js && npm ci --no-audit --no-fund --silent)
out=facetwin/viewer/assets
mkdir -p "$out"
version=$(node -p "require('./scripts/js/node_modules/three/package.json').version")
scripts/js/node_modules/.bin/esbuild scripts/js/viewer_entry.js --bundle --minify --format=iife \
    --legal-comments=none --log-level=warning \
    --banner:js="/* three.js ${version} (MIT licence, see THREE_LICENSE) bundled by scripts/build_viewer.sh */" \
    --outfile="$out/three-bundle.min.js"
cp scripts/js/node_modules/three/LICENSE "$out/THREE_LICENSE"
echo "three.js $version -> $out/three-bundle.min.js ($(wc -c < "$out/three-bundle.min.js") bytes)"
