"""benchmark.plots.per_view_psnr: one panel per input view, never a mean of fits from different input views."""
import numpy as np
import pandas as pd
import pytest

import benchmark.plots as plots


def rows_for(input_views, patients=("01", "02")):
    """Tidy PSNR rows: the model scores 10 + view (+1 for patient 02) when fitted on view 0, 40 when on 18."""
    rows = []
    for input_view in input_views:
        for offset, patient in enumerate(patients):
            for view in range(72):
                value = 10.0 + view + offset if input_view == 0 else 40.0
                rows.append({"dataset": "knee", "metric": "psnr", "convention": "paper", "method": "model",
                             "patient": patient, "input_view": input_view, "view": view, "value": value})
    return pd.DataFrame(rows)


@pytest.fixture
def figures(monkeypatch):
    """The figures per_view_psnr would save, kept open for inspection."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: kept.append(figure))
    yield kept
    for figure in kept:
        plots.plt.close(figure)


def test_one_panel_per_input_view_with_each_own_curve(figures, tmp_path):
    plots.per_view_psnr(rows_for([0, 18]), "knee", tmp_path / "p.png")
    axes = figures[0].axes
    assert len(axes) == 2
    first, second = (axis.get_lines()[0] for axis in axes)  # the model's line, before the input view's marker
    np.testing.assert_allclose(first.get_xdata(), np.arange(72) * 5)
    np.testing.assert_allclose(first.get_ydata(), 10.5 + np.arange(72))  # mean over the two patients only
    np.testing.assert_allclose(second.get_ydata(), 40.0)
    assert "input view 18 (90 deg" in axes[1].get_title() and "2 fits" in axes[1].get_title()
    assert axes[1].get_lines()[-1].get_xdata()[0] == 90  # the dotted marker of the input view


def test_from_input_counts_angles_from_each_fit_and_uses_one_panel(figures, tmp_path):
    views = np.arange(72)
    base = {"dataset": "knee", "metric": "psnr", "convention": "paper", "method": "model", "patient": "01"}
    rows = pd.DataFrame([{**base, "input_view": 18, "view": v, "value": 10.0 + (v - 18) % 72} for v in views]
                        + [{**base, "input_view": 0, "view": v, "value": 10.0 + v} for v in views])
    plots.per_view_psnr(rows, "knee", tmp_path / "p.png", from_input=True)
    axes = figures[0].axes
    assert len(axes) == 1 and "counted from each fit's input view" in axes[0].get_title()
    assert "2 fits" in axes[0].get_title()
    np.testing.assert_allclose(axes[0].get_lines()[0].get_ydata(), 10.0 + views)


def test_infinite_psnr_of_an_exact_copy_is_left_out(figures, tmp_path):
    rows = rows_for([0], patients=("01",))
    rows.loc[rows.view == 0, "value"] = np.inf
    plots.per_view_psnr(rows, "knee", tmp_path / "p.png")
    assert np.isnan(figures[0].axes[0].get_lines()[0].get_ydata()[0])
