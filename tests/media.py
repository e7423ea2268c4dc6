"""Odd media files the tests create (videos, images) — shared by the data tests."""

import cv2


def write_video(path, frames, fps=25):
    """Write RGB uint8 frames (H, W, 3) as an mp4v video."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def two_people_prepared(src, out, size):
    """A real prepared folder: two people ("ann", "bob"), three photos each (the astronaut photo,
    shifted and, the third, mirrored), prepared at ``size`` px into ``out``; returns ``out``."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    from facetwin.data.prepare import PrepareConfig, prepare

    astro = skdata.astronaut()
    for person, shift in (("ann", 0), ("bob", 25)):
        (src / person).mkdir()
        for i in range(3):
            img = np.roll(astro, shift + 9 * i, axis=1)
            Image.fromarray(img[:, ::-1] if i == 2 else img).save(src / person / f"{i}.jpg", quality=92)
    summary = prepare([f"{src}:folder"], out, PrepareConfig(size=size), progress=False)
    assert summary["items_total"] == 6
    return out
