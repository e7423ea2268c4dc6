// The parts of three.js the facetwin viewer page uses, bundled into one classic script
// (facetwin/viewer/assets/three-bundle.min.js) by scripts/build_viewer.sh.
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

window.FACETWIN_THREE = { THREE, GLTFLoader, OrbitControls };
