"""`facetwin bench detail`: coarse + detail figures at batch 1 (no timing asserted, only the report)."""

from types import SimpleNamespace

import torch


def test_bench_detail_reports_threads_and_the_person_path_and_leaves_the_model_as_it_was(monkeypatch):
    from facetwin.cli import bench_detail

    before = torch.get_num_threads()
    model, source = bench_detail._model("default")
    monkeypatch.setattr(bench_detail, "_model", lambda _file: (model, source))  # one model, to inspect after
    res = bench_detail.measure(SimpleNamespace(detail="default", repeats=3))
    assert torch.get_num_threads() == before
    assert getattr(model.coarse.encoder, "fixed_shape", None) is None  # the person path's β removed again
    assert getattr(model.coarse.encoder, "runtime", None) is None        # and the backend back to torch
    assert res["backend"] in ("onnxruntime", "torch")
    for key in ("ms_1_thread", "ms_2_threads", "ms_2_threads_person", "coarse_ms_median", "torch_ms_1_thread", "torch_ms_2_threads",
                "ms_per_frame_2_threads_pipelined", "fps_2_threads_pipelined_person", "fps_2_threads_pipelined_refined"):
        assert res[key] > 0, key
    assert res["fps_2_threads_person"] == 1000.0 / res["ms_2_threads_person"]
    assert res["detail_ms_median"] == res["ms_median"] - res["coarse_ms_median"]
    assert res["fps_2_threads_pipelined"] == 1000.0 / res["ms_per_frame_2_threads_pipelined"]
