"""One offline HTML page that shows a GLB in WebGL (three.js, vendored in ``assets/``).

``write_page(path, glb, ...)`` inlines the three.js bundle, the viewer script and the GLB
(base64) into one file: it opens from disk with no network. Regenerate the bundle with
``scripts/build_viewer.sh`` (three.js from npm, MIT licence in ``assets/THREE_LICENSE``).
"""

from facetwin.viewer.page import Section, page_html, write_page

__all__ = ["Section", "page_html", "write_page"]
