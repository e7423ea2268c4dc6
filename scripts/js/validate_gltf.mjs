// Validate a .glb/.gltf with the Khronos glTF validator; prints its JSON report on stdout.
// usage: node scripts/js/validate_gltf.mjs FILE.glb
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");
const file = process.argv[2];
const data = new Uint8Array(await readFile(file));
const report = await validator.validateBytes(data, { uri: file, maxIssues: 200 });
console.log(JSON.stringify(report));
