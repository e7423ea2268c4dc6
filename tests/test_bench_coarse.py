"""`facetwin bench coarse`: batch-1 figures on 1 and 2 threads (no timing asserted, only the report)."""

from types import SimpleNamespace

import pytest
import torch


def test_bench_coarse_reports_one_and_two_threads_and_restores_threads():
    from facetwin.cli.bench_coarse import REFERENCE_MS_1_THREAD, measure

    before = torch.get_num_threads()
    res = measure(SimpleNamespace(model="default", repeats=3))
    assert torch.get_num_threads() == before
    assert res["batch"] == 1 and res["ms_1_thread"] > 0 and res["ms_2_threads"] > 0
    assert res["backend"] in ("onnxruntime", "torch") and res["torch_ms_1_thread"] > 0 and res["torch_ms_2_threads"] > 0
    assert res["refine_ms_1_thread"] > 0 and res["refine_ms_2_threads"] > 0
    assert res["encoder_ms_1_thread"] > 0  # no timing compared: on a shared CPU any two timings can swap (seen under load)
    assert res["ratio_1_thread_to_reference"] == pytest.approx(res["ms_1_thread"] / REFERENCE_MS_1_THREAD)
