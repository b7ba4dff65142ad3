"""The novel-view headline: each model case against its strongest baseline."""
from __future__ import annotations

import pandas as pd

from benchmark.exports import novel_view_verdicts, verdict_markdown


def rows(values: dict[str, tuple[float, float]], input_view: int = 0) -> pd.DataFrame:
    """Two views per method: the input (scored 99, must be ignored) and view 1 with (psnr, ssim)."""
    out = []
    for method, (psnr, ssim) in values.items():
        for view, (p, s) in ((input_view, (99.0, 1.0)), (input_view + 1, (psnr, ssim))):
            out += [{"dataset": "knee", "patient": "04", "input_view": input_view, "method": method, "view": view,
                     "convention": "paper", "metric": m, "value": v} for m, v in (("psnr", p), ("ssim", s))]
    return pd.DataFrame(out)


def test_strongest_baseline_margin_and_ssim():
    table = rows({"model": (21.6, 0.76), "copy": (18.0, 0.70), "mirror": (20.5, 0.75), "mean": (12.0, 0.77)})
    verdict = novel_view_verdicts(table, ("copy", "mirror", "mean")).iloc[0]
    assert verdict.strongest_baseline == "mirror" and abs(verdict.margin_db - 1.1) < 1e-9
    assert verdict.best_baseline_ssim == 0.77 and not verdict.wins      # SSIM below the mean image's
    verdict = novel_view_verdicts(table.assign(value=table.value.where(
        ~((table.method == "mean") & (table.metric == "ssim")), 0.5)), ("copy", "mirror", "mean")).iloc[0]
    assert verdict.wins
    close = rows({"model": (21.4, 0.80), "copy": (18.0, 0.70), "mirror": (20.5, 0.75)})
    assert not novel_view_verdicts(close, ("copy", "mirror")).iloc[0].wins  # only +0.9 dB
    assert "| NO |" in verdict_markdown(novel_view_verdicts(close, ("copy", "mirror")))


def test_views_ahead_count_each_view_against_every_baseline_there():
    """The model wins the mean (+1.5 dB over the mirror) but is behind the copy at view 1 and behind the mean
    image's SSIM at view 3; the mean image has no score at view 2, so there only copy and mirror count."""
    per_view = {"model": {1: (30.0, 0.90), 2: (25.0, 0.80), 3: (24.0, 0.70)},
                "copy": {1: (31.0, 0.85), 2: (18.0, 0.60), 3: (15.0, 0.50)},
                "mirror": {1: (28.0, 0.85), 2: (23.0, 0.75), 3: (23.5, 0.65)},
                "mean": {1: (10.0, 0.50), 3: (12.0, 0.72)}}
    table = pd.DataFrame([{"dataset": "knee", "patient": "04", "input_view": 0, "method": method, "view": view,
                           "convention": "paper", "metric": metric, "value": value}
                          for method, views in per_view.items()
                          for view, (p, s) in {**views, 0: (99.0, 1.0)}.items()
                          for metric, value in (("psnr", p), ("ssim", s))])
    verdict = novel_view_verdicts(table, ("copy", "mirror", "mean")).iloc[0]
    assert verdict.strongest_baseline == "mirror" and abs(verdict.margin_db - 1.5) < 1e-9
    assert (verdict.novel_views, verdict.views_psnr_ahead, verdict.views_ssim_ahead) == (3, 2, 2)
    assert "| 2 / 2 of 3 |" in verdict_markdown(novel_view_verdicts(table, ("copy", "mirror", "mean")))
