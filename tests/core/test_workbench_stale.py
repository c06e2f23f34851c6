"""Stale results (issue 17): provenance differences, the ResultsStale event, what Run re-runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ioi_desktop.core.analyses import logit_diff, logit_lens
from ioi_desktop.core.grids import SMALL_GAP_THRESHOLD, small_gap_warning
from ioi_desktop.core.pairs import notebook_prompt_set
from ioi_desktop.core.workbench import Provenance, ResultsStale, Workbench


def finished_bench() -> Workbench:
    bench = Workbench()
    bench.set_prompt_set(notebook_prompt_set())
    bench.set_run_settings(analyses=["logit_diff", "logit_lens"])
    bench.begin_run(bench.run_request())
    bench.results.add_result(logit_diff.Result(logit_diff_clean=np.ones(8, dtype=np.float32)))
    bench.results.add_result(logit_lens.Result(logit_lens_logit_diff=np.ones(3, dtype=np.float32)))
    bench.results.end("finished")
    return bench


def test_provenance_differences_name_what_changed_and_ignore_the_batch_size():
    base = Provenance("gpt2", "abc", 8, {"top_k": 5, "batch_size": None})
    assert base.differences(replace(base, options={"top_k": 5, "batch_size": 4})) == ()
    assert base.differences(replace(base, model="other")) == ("model",)
    assert base.differences(replace(base, prompt_hash="def", n_pairs=9)) == ("prompt set",)
    assert base.differences(replace(base, options={"top_k": 6, "batch_size": None})) == ("options",)
    # Nothing loaded now (a session opened without its model): the model is not compared.
    assert base.differences(replace(base, model="")) == ()
    assert base.summary() == "results from gpt2, 8 pairs"


def test_changed_options_make_only_that_analysis_stale_and_run_reruns_it_alone():
    bench = finished_bench()
    events: list = []
    bench.hub.subscribe(ResultsStale, events.append)
    bench.set_options("logit_lens", logit_lens.Options(top_k=7))
    assert events[-1].stale == ("logit_lens",) and events[-1].reasons["logit_lens"] == ("options",)
    assert bench.analyses_to_run() == (("logit_lens",), True)
    bench.set_options("logit_lens", logit_lens.Options())
    assert events[-1].stale == () and bench.analyses_to_run() == (("logit_diff", "logit_lens"), False)


def test_another_prompt_set_makes_every_result_stale():
    bench = finished_bench()
    prompts = notebook_prompt_set()
    bench.set_prompt_set(replace(prompts, pairs=prompts.pairs[:4]))
    assert set(bench.stale_analyses()) == {"logit_diff", "logit_lens"}
    assert bench.results.stale()["logit_diff"] == ("prompt set",)
    # Every ticked analysis is stale: Run runs them all, as a fresh run.
    assert bench.analyses_to_run() == (("logit_diff", "logit_lens"), False)


def test_small_gap_warning_names_the_gap_and_the_threshold():
    assert small_gap_warning(1.0, 0.997).startswith("Small gap: |clean − corrupted| = 0.003 logits")
    assert f"{SMALL_GAP_THRESHOLD:g}" in small_gap_warning(1.0, 0.997)
    assert small_gap_warning(2.0, -1.0) == "" and small_gap_warning(None, 1.0) == ""
