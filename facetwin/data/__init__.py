"""Face data pipeline: robust image/video reading, detection, 68-point labels, skin masks,
crops, datasets, augmentation and ``facetwin prepare``.

Coordinates everywhere: pixels, origin at the top-left CORNER of the top-left pixel, x right,
y down (so the centre of pixel (i, j) is (j + 0.5, i + 0.5)). ``.pts`` files are 1-based and
converted on read/write (see :mod:`facetwin.data.pts`).
"""
