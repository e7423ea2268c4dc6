"""Markdown tables of ``facetwin evaluate person --json`` results (BENCHMARKS.md, issue #15).

    python benchmarks/person_table.py results/*.json

Each JSON file is either the stdout of one ``facetwin evaluate person INPUT --json`` run (the last
line is the result) or a file of ``benchmarks/person_suite.py`` (the result, or the input's
one-line error). Prints, per kind of input (videos, photo folders): one row per input (base vs
person: overall / boundary / inner NME, photometric error, identity spread) and the mean over
rows; then the "priors kept" table (occluded and strongly turned test frames) and the likeness
table (dlib descriptor distance photo ↔ render, β consistency); inputs that failed are listed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: Path) -> dict | None:
    """The result in ``path``: {"input", "kind", ...} or {"input", "error"}; None if empty."""
    text = Path(path).read_text()
    try:  # a suite file (one JSON document, indented)
        return json.loads(text)
    except json.JSONDecodeError:  # the stdout of `evaluate person --json`: the result is the last line
        lines = [l for l in text.splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None


def name_of(path: Path, r: dict) -> str:
    if r.get("name"):
        return r["name"]
    return Path(path).stem.removeprefix("resq_").removeprefix("res2_").removeprefix("res_")


def spread(r: dict) -> bool:
    """An identity spread needs at least 2 test frames in a fold."""
    return min(f["test_frames"] for f in r["folds"]) >= 2


def _f(x, fmt=".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _arrow(a, b, fmt=".4f") -> str:
    return "n/a" if a is None or b is None else f"{a:{fmt}} → {b:{fmt}}"


COLUMNS = [
    ("frames train/test", lambda r: f"{r['folds'][0]['train_frames'] if len(r['folds']) == 1 else 'k-out'}/{r['frames']['test']}"),
    ("steps", lambda r: "/".join(str(f["steps"]) for f in r["folds"])),
    ("NME base", lambda r: f"{r['base']['nme_overall']:.4f}"),
    ("NME person", lambda r: f"{r['person']['nme_overall']:.4f}"),
    ("reduction", lambda r: f"{100 * r['nme_reduction']:+.1f} %"),
    ("boundary b → p", lambda r: _arrow(r['base']['nme_boundary'], r['person']['nme_boundary'])),
    ("inner b → p", lambda r: _arrow(r['base']['nme_inner'], r['person']['nme_inner'])),
    ("NME person, per-frame β", lambda r: f"{r['person_per_frame_beta']['nme_overall']:.4f}"),
    ("photometric b → p", lambda r: _arrow(r['base'].get('photometric'), r['person'].get('photometric'))),
    ("β std b → p(per-frame)", lambda r: _arrow(r['base']['beta_std'], r['person_per_frame_beta']['beta_std'], ".3f") if spread(r) else "n/a"),
    ("neutral RMS mm b → p(per-frame)", lambda r: _arrow(r['base']['neutral_rms_mm'], r['person_per_frame_beta']['neutral_rms_mm'], ".2f") if spread(r) else "n/a"),
    ("personalize s", lambda r: f"{r['personalize_seconds']:.0f}"),
]


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def main_table(rows: list[tuple[str, dict]]) -> list[str]:
    out = ["| input | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, r in rows:
        out.append(f"| {name} | " + " | ".join(f(r) for _, f in COLUMNS) + " |")
    if rows:
        m = lambda f: _mean([f(r) for _, r in rows])  # noqa: E731
        srows = [r for _, r in rows if spread(r)] or [r for _, r in rows]
        sm = lambda f: _mean([f(r) for r in srows])  # noqa: E731
        better = sum(r["person"]["nme_overall"] < r["base"]["nme_overall"] for _, r in rows)
        out.append(
            f"| **mean of {len(rows)}** | | | **{m(lambda r: r['base']['nme_overall']):.4f}** | **{m(lambda r: r['person']['nme_overall']):.4f}** "
            f"| **{100 * m(lambda r: r['nme_reduction']):+.1f} %** (lower on {better}/{len(rows)}) "
            f"| {_arrow(m(lambda r: r['base']['nme_boundary']), m(lambda r: r['person']['nme_boundary']))} "
            f"| {_arrow(m(lambda r: r['base']['nme_inner']), m(lambda r: r['person']['nme_inner']))} "
            f"| {m(lambda r: r['person_per_frame_beta']['nme_overall']):.4f} "
            f"| {_arrow(m(lambda r: r['base'].get('photometric')), m(lambda r: r['person'].get('photometric')))} "
            f"| {_arrow(sm(lambda r: r['base']['beta_std']), sm(lambda r: r['person_per_frame_beta']['beta_std']), '.3f')} "
            f"| {_arrow(sm(lambda r: r['base']['neutral_rms_mm']), sm(lambda r: r['person_per_frame_beta']['neutral_rms_mm']), '.2f')} "
            f"| {m(lambda r: r['personalize_seconds']):.0f} |")
    return out


def priors_table(rows: list[tuple[str, dict]]) -> list[str]:
    """Occluded test frames (every test frame, occluder pasted) and strongly turned ones (those there are)."""
    rows = [(n, r) for n, r in rows if "priors" in r]
    out = ["| input | occluded frames | occluded NME base → person | turned frames (abs(yaw) > threshold) | turned NME base → person |",
           "|---|---|---|---|---|"]
    for name, r in rows:
        o, t = r["priors"]["occluded"], r["priors"]["turn"]
        out.append(f"| {name} | {o['frames']} | {_arrow(o['nme_base'], o['nme_person'])} | {t['frames']} "
                   f"| {_arrow(t['nme_base'], t['nme_person'])} |")
    if rows:
        occ = [r["priors"]["occluded"] for _, r in rows if r["priors"]["occluded"]["frames"]]
        turn = [r["priors"]["turn"] for _, r in rows if r["priors"]["turn"]["frames"]]
        no_worse = lambda xs: sum(x["nme_person"] <= x["nme_base"] for x in xs)  # noqa: E731
        out.append(f"| **mean** | {len(occ)} inputs | **{_arrow(_mean([x['nme_base'] for x in occ]), _mean([x['nme_person'] for x in occ]))}** "
                   f"(person no worse on {no_worse(occ)}/{len(occ)}) | {len(turn)} inputs with turns "
                   f"| **{_arrow(_mean([x['nme_base'] for x in turn]), _mean([x['nme_person'] for x in turn]))}** "
                   f"(person no worse on {no_worse(turn)}/{len(turn)}) |")
    return out


def likeness_table(rows: list[tuple[str, dict]]) -> list[str]:
    rows = [(n, r) for n, r in rows if "likeness" in r]
    out = ["| input | test frames | render distance base → person | person closer | β std, all frames b → p(per-frame) |",
           "|---|---|---|---|---|"]
    for name, r in rows:
        lk = r["likeness"]
        out.append(f"| {name} | {lk['test_frames']} | {_arrow(lk['render_distance_base'], lk['render_distance_person'], '.3f')} "
                   f"| {100 * lk['person_closer_share']:.0f} % "
                   f"| {_arrow(lk.get('beta_std_all_frames_base'), lk.get('beta_std_all_frames_person_per_frame_beta'), '.3f')} |")
    if rows:
        lks = [r["likeness"] for _, r in rows]
        closer = sum(lk["render_distance_person"] < lk["render_distance_base"] for lk in lks)
        steadier = sum(lk.get("beta_std_all_frames_person_per_frame_beta", 1) < lk.get("beta_std_all_frames_base", 0) for lk in lks)
        out.append(f"| **mean of {len(rows)}** | | **{_arrow(_mean([lk['render_distance_base'] for lk in lks]), _mean([lk['render_distance_person'] for lk in lks]), '.3f')}** "
                   f"(person closer on {closer}/{len(rows)}) | {100 * _mean([lk['person_closer_share'] for lk in lks]):.0f} % "
                   f"| {_arrow(_mean([lk.get('beta_std_all_frames_base') for lk in lks]), _mean([lk.get('beta_std_all_frames_person_per_frame_beta') for lk in lks]), '.3f')} "
                   f"(lower on {steadier}/{len(rows)}) |")
    return out


def tables(named: list[tuple[str, dict]]) -> str:
    """All tables (markdown) of named results; a result with ``error`` is listed as failed."""
    ok = [(n, r) for n, r in named if "error" not in r]
    failed = [(n, r) for n, r in named if "error" in r]
    out = []
    for kind, title in (("video", "Videos (personalised on the first 70 % of the frames in time, tested on the last 30 %)"),
                        ("photos", "Photo folders (leave-k-out)")):
        rows = [(n, r) for n, r in ok if r.get("kind") == kind]
        if rows:
            out += [f"**{title}**", "", *main_table(rows), ""]
    if len({r.get("kind") for _, r in ok}) > 1:
        out += ["**All inputs**", "", *main_table(ok)[-1:], ""]
    if any("priors" in r for _, r in ok):
        out += ["**Priors kept** (held-out frames with a pasted occluder; held-out frames with a strong head turn)", "",
                *priors_table(ok), ""]
    if any("likeness" in r for _, r in ok):
        out += ["**Likeness** (dlib descriptor distance between a held-out frame and its render composited onto it; "
                "β std over all of the person's frames)", "", *likeness_table(ok), ""]
    if failed:
        out += ["**Not measured**: " + "; ".join(f"{n}: {r['error']}" for n, r in failed), ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Markdown tables of `facetwin evaluate person --json` results")
    ap.add_argument("results", nargs="+", help="JSON files (suite files or saved stdout of evaluate person --json)")
    args = ap.parse_args(argv)
    missing = [p for p in args.results if not Path(p).is_file()]
    if missing:
        print(f"person_table: not a file: {missing[0]}", file=sys.stderr)
        return 2
    named = [(name_of(Path(p), r), r) for p in args.results if (r := load(Path(p))) is not None]
    print(tables(named))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
