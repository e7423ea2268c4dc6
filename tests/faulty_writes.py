"""Simulated write faults for the tests: a full disk, a refused permission or Ctrl-C inside a
write, injected into :mod:`facetwin.outputs` (no filesystem is mounted; tests run as root, where
chmod blocks nothing)."""

from __future__ import annotations

import errno
import os

from facetwin import outputs


class FaultyWriter:
    """A file object whose writes fail like a full disk (or a refused permission), or are cut by
    Ctrl-C (``err`` = 0: KeyboardInterrupt after the first bytes)."""

    def __init__(self, fh, err: int):
        self.fh, self.err = fh, err

    def write(self, data):
        if self.err == 0:
            self.fh.write(bytes(data)[:7] if not isinstance(data, str) else data[:7])  # a truncated start
            raise KeyboardInterrupt
        raise OSError(self.err, os.strerror(self.err))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False

    def __getattr__(self, name):
        return getattr(self.fh, name)


def break_writer(monkeypatch, err: int = errno.ENOSPC, after: int = 0) -> None:
    """From the ``after``-th file on, every write through facetwin.outputs fails with ``err``
    (0: Ctrl-C inside the write)."""
    real_open = open
    count = {"n": 0}

    def fake_open(path, mode="r", *a, **k):
        fh = real_open(path, mode, *a, **k)
        count["n"] += 1
        if count["n"] > after and any(m in mode for m in "wa"):
            if err == errno.EACCES:
                fh.close()
                os.unlink(path)
                raise PermissionError(err, os.strerror(err), str(path))
            return FaultyWriter(fh, err)
        return fh

    monkeypatch.setattr(outputs, "open", fake_open, raising=False)
