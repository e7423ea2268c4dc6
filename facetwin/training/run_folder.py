"""The run folder of a training run (``run.out_dir``): who may write into it, and what survives.

* A folder that already holds a run (metrics, checkpoints or an export) is continued only with
  ``--resume`` and replaced only with ``--overwrite``; otherwise the run stops before writing
  anything, so a second run never mixes its records or export into the first one.
* Temporaries of checkpoint writes that a killed process left behind are removed at start.
* After a resume from step N, the metric records of steps > N (written by the interrupted run
  after its last checkpoint, and re-made now) are dropped, so the records continue, not repeat.
* Ctrl-C (SIGINT) does not kill a step half-way: :class:`InterruptFlag` lets the step finish,
  and the trainer then writes a checkpoint and stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

from facetwin.errors import FacetwinError
from facetwin.outputs import OutputError, clean_temporaries, describe_os_error, ensure_dir, write_text
from facetwin.training import checkpoint as ckpt

RUN_SUBFOLDERS = ("checkpoints", "export", "images")


def holds_run(out: Path) -> bool:
    """Whether ``out`` already has the metrics, checkpoints or export of a run."""
    out = Path(out)
    metrics = out / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        return True
    if ckpt.list_checkpoints(out / "checkpoints"):
        return True
    export = out / "export"
    return export.is_dir() and any(p.is_file() and not p.name.startswith(".") for p in export.iterdir())


def check(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse before anything is written: ``out`` is a file, or holds a run and neither
    ``resume`` nor ``overwrite`` says what to do with it."""
    out = Path(out)
    if resume and overwrite:
        raise FacetwinError("--resume and --overwrite contradict each other: continue a run or replace it, not both")
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot write the run to {out}: it exists and is not a folder")
    if not resume and not overwrite and out.is_dir() and holds_run(out):
        raise FacetwinError(f"{out} already holds a training run: pass --resume auto to continue it or --overwrite to replace it")


def prepare(out: Path, ckpt_dir: Path, wipe: bool) -> None:
    """Create ``out`` (it must be writable), remove stale temporaries, and with ``wipe`` the
    previous run's files (only the files a run writes; anything else in the folder stays)."""
    out = ensure_dir(out)
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: {describe_os_error(PermissionError(13, ''))}")
    for folder in (out, *(out / name for name in RUN_SUBFOLDERS)):
        clean_temporaries(folder)
        if folder.is_dir():
            for tmp in folder.glob(ckpt.LEGACY_TMP_GLOB):
                with contextlib.suppress(OSError):
                    tmp.unlink()
    if wipe:
        try:
            (out / "metrics.jsonl").unlink(missing_ok=True)
            for _, path in ckpt.list_checkpoints(ckpt_dir):
                path.unlink()
            for name in ("export", "images"):
                if (out / name).is_dir():
                    for path in (out / name).iterdir():
                        if path.is_file():
                            path.unlink()
        except OSError as exc:
            raise OutputError(f"cannot replace the run in {out}: {describe_os_error(exc)}") from None


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (a line cut short by a kill is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if isinstance(rec, dict) and isinstance(rec.get("step"), int):
                records.append(rec)
    return records


def truncate_metrics(path: Path, step: int) -> list[dict]:
    """Keep the records up to ``step`` (rewritten atomically when anything is dropped)."""
    from facetwin.outputs import dumps_json

    records = read_metrics(path)
    kept = [r for r in records if r["step"] <= step]
    if Path(path).is_file() and (len(kept) != len(records) or step == 0):
        if kept:
            write_text(path, "".join(dumps_json(r) + "\n" for r in kept))
        else:
            Path(path).unlink(missing_ok=True)
    return kept


class InterruptFlag:
    """While active, SIGINT sets a flag instead of raising KeyboardInterrupt mid-step.

    Only installed in the main thread and when SIGINT has Python's default handler (so tests
    and embedding applications keep theirs). A second Ctrl-C while the flag is set still
    interrupts at once.
    """

    def __init__(self):
        self.flag = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def install(self) -> "InterruptFlag":
        self.flag = False
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def restore(self) -> None:
        """Put the previous SIGINT handler back (idempotent)."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def requested(self, info) -> bool:
        """Whether any process saw Ctrl-C (all processes agree, so they stop at the same step)."""
        if not getattr(info, "distributed", False):
            return self.flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if self.flag else 0.0], device=info.device if info.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        self.flag = bool(t.item() > 0)
        return self.flag
