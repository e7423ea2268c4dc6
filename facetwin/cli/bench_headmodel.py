"""``facetwin bench headmodel``: forward and forward+backward time of a head model.

Forward = identity + expression blend, joints, linear blend skinning, 68 landmarks for a batch
of random parameters; backward = gradients of a scalar loss on vertices and landmarks with
respect to β, ψ and the pose.
"""

from __future__ import annotations

from facetwin.cli.bench import add_benchmark, time_ms
from facetwin.cli.main import add_head_model_flag


def measure(args) -> dict:
    import torch

    from facetwin.headmodel import load_head_model

    threads = getattr(args, "threads", 2)
    repeats = max(1, getattr(args, "repeats", 20))
    batches = getattr(args, "batches", [1, 32])
    torch.set_num_threads(threads)
    model = load_head_model(getattr(args, "head_model", "open"))
    results: dict = {
        "head_model": model.name,
        "vertices": int(model.v_template.shape[0]),
        "identity_components": model.n_shape,
        "expression_components": model.n_expr,
        "threads": threads,
        "repeats": repeats,
    }
    g = torch.Generator().manual_seed(0)
    for batch in batches:
        shape = torch.randn(batch, model.n_shape, generator=g)
        expr = torch.rand(batch, model.n_expr, generator=g) * 0.3
        pose = torch.randn(batch, 5, 3, generator=g) * 0.1

        def forward():
            with torch.no_grad():
                model(shape=shape, expression=expr, pose=pose)

        def forward_backward():
            b, e, p = (t.clone().requires_grad_() for t in (shape, expr, pose))
            out = model(shape=b, expression=e, pose=p)
            (out.vertices.square().mean() + out.landmarks.square().mean()).backward()

        results[f"batch_{batch}"] = {
            "forward_ms": time_ms(forward, repeats)[0],
            "forward_backward_ms": time_ms(forward_backward, repeats)[0],
        }
    return results


def add_parser(subparsers) -> None:
    parser = add_benchmark(subparsers, "headmodel", "time the head model forward and forward+backward (batch 1 and 32)", measure, 20)
    add_head_model_flag(parser)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
