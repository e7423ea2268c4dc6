"""Work side by side on the cores: a generator run ahead in a background thread. Chained, it makes
a pipeline: the video path decodes + tracks frame t+2, runs the coarse pass of frame t+1 and the
details of frame t at once (:func:`facetwin.inference.video.reconstruct_video`).

OpenCV decoding, dlib, torch operators and onnxruntime release the GIL while they compute, so the
threads really overlap. Grad mode is per thread in torch: each stage function sets its own
(``torch.no_grad`` inside, as the inference methods already do).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def prefetch(iterator: Iterable[T], depth: int = 4, name: str = "facetwin-prefetch") -> Iterator[T]:
    """Run ``iterator`` in a background thread, at most ``depth`` items ahead; its exceptions
    re-raise here, in order (items produced before the failure are delivered first). Closing the
    consumer early stops the thread at its next item."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, done))
        except BaseException as exc:  # handed to the consumer
            q.put((False, exc))

    t = threading.Thread(target=work, name=name, daemon=True)
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=5)

