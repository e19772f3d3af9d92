"""Figures a reviewer accepts (issue 15 item 7), checked on rendered figures, not on code:

* no text runs into another: every pair of visible texts (suptitle, panel titles, axis labels, tick labels in view,
  legend entries, footnotes) has disjoint boxes in the rendered figure, for the longest method names the registry
  holds, a comparison label (``METHOD @ PATH``) and the longest experiment name a suite allows; a y label is no
  taller than its axes (it would run up into the titles);
* one colour per method: a method's line has the same colour in every figure (error vs time, vs dimension, seconds
  per step, the timing table's figure, the sample figure) and it is :func:`method_colors`' colour;
* a figure of one method is not drawn; values a log axis cannot show (negative unbiased estimates, 0 seconds per
  step) are named in a footnote, never dropped silently.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgb

from wgfbench.reports import figures
from wgfbench.reports.samples import samples_panels

ROOT = Path(__file__).resolve().parents[1]
LONG_EXPERIMENT = "e" * 64  # the longest name a suite accepts (wgfbench.suites.NAME_RE)
METHODS = ["variational_jko", "jko_icnn_cpflow_grad", "exact_jko", "variational_jko @ results/default/runs"]


def records(methods=METHODS, dims=(2, 4, 8, 16), seeds=3, experiment=LONG_EXPERIMENT, value=None) -> pd.DataFrame:
    """Records of every method x dim x seed over k = 0..3 (t = 0.1 k, report_t = 0.3), with floors, the exact JKO
    iterate's discretisation error and timings; ``value(method, dim, seed, k)`` gives symkl_moment."""
    value = value or (lambda m, d, s, k: 10.0 ** (-1 - 0.3 * k - 0.1 * methods.index(m) + 0.05 * s))
    rows = []
    for m, d, s, k in itertools.product(methods, dims, range(seeds), range(4)):
        v = value(m, d, s, k)
        rows.append(
            dict(
                suite="s", experiment=experiment, problem="ou", method=m, dim=d, seed=s, k=k, t=0.1 * k,
                report_t=0.3, h=0.1, n_steps=3, problem_params="{}", method_params="{}", eval_params="{}",
                status="ok", symkl_moment=v, symkl_moment_vs_jko=v / 2, symkl_moment_jko_pde=1e-2,
                symkl_moment_floor=1e-4, symkl_moment_floor_sd=1e-4, symkl_moment_floor_q95=3e-4,
                time_eval_s=0.01, time_step_s=(0.1 * d * (1 + methods.index(m))) if k else np.nan,
            )
        )  # fmt: skip
    return pd.DataFrame(rows)


def texts(fig: plt.Figure) -> list[tuple[str, object]]:
    """(text, window box) of every visible, non-empty text of the rendered figure; tick labels only for ticks in
    view (matplotlib keeps stale tick objects outside the limits)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    tick_labels, shown = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            tol = 1e-9 * max(1.0, abs(hi - lo))
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                for label in (tick.label1, tick.label2):
                    tick_labels.add(id(label))
                    if lo - tol <= tick.get_loc() <= hi + tol:
                        shown.append(label)
    found = [t for t in fig.findobj(matplotlib.text.Text) if id(t) not in tick_labels] + shown
    return [(t.get_text(), t.get_window_extent(renderer)) for t in found if t.get_visible() and t.get_text().strip()]


def collisions(fig: plt.Figure) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes overlap by more than a pixel each way."""
    out = []
    for (a, ba), (b, bb) in itertools.combinations(texts(fig), 2):
        if min(ba.x1, bb.x1) - max(ba.x0, bb.x0) > 1 and min(ba.y1, bb.y1) - max(ba.y0, bb.y0) > 1:
            out.append((a, b))
    return out


def tall_labels(fig: plt.Figure) -> list[str]:
    """y labels taller than their axes (they run up past the axes' top, into the titles)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        label = ax.yaxis.label
        if label.get_visible() and label.get_text():
            box, frame = label.get_window_extent(renderer), ax.get_window_extent(renderer)
            if box.y1 > frame.y1 + 1 or box.y0 < frame.y0 - 1:
                out.append(label.get_text())
    return out


def line_colors(fig: plt.Figure) -> dict[str, tuple]:
    """Colour of every labelled line and collection of the figure's legends (method -> RGB)."""
    out = {}
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            color = handle.get_color() if hasattr(handle, "get_color") else handle.get_facecolor()
            out[text.get_text()] = to_rgb(np.asarray(color).reshape(-1)[:3] if not isinstance(color, str) else color)
    return out


def suite_like_figures(df: pd.DataFrame) -> dict[str, plt.Figure]:
    title = f"{LONG_EXPERIMENT}: {figures.metric_label('symkl_moment')}"
    return {
        "error_vs_time": figures.error_vs_time_figure(df, "symkl_moment", title),
        "error_vs_time_vs_jko": figures.error_vs_time_figure(df, "symkl_moment_vs_jko", title),
        "error_vs_dim": figures.error_vs_dim_figure(df, "symkl_moment", LONG_EXPERIMENT),
        "seconds_per_step": figures.seconds_vs_dim_figure(df, LONG_EXPERIMENT),
    }


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_no_text_runs_into_another_with_the_longest_labels() -> None:
    for name, fig in suite_like_figures(records()).items():
        assert fig is not None, name
        assert collisions(fig) == [], name
        assert tall_labels(fig) == [], name
        labels = {t for t, _ in texts(fig)}
        assert {"variational_jko @ results/default/runs", "jko_icnn_cpflow_grad"} <= labels, name


def test_the_collision_check_finds_a_label_that_runs_into_a_title() -> None:
    """The check can fail: a y label and a title placed over each other, and an unwrapped long label."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title("a title")
    ax.text(0.5, 1.02, "a label over the title", transform=ax.transAxes, ha="center")
    assert collisions(fig)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_ylabel(figures.metric_label("symkl_mc"))  # not wrapped: taller than a 2-inch axes
    assert tall_labels(fig)


def test_a_method_has_one_colour_in_every_figure() -> None:
    colors = figures.method_colors(METHODS)
    assert len(set(colors[m] for m in METHODS)) == len(METHODS), "distinct methods, distinct colours"
    for name, fig in suite_like_figures(records()).items():
        drawn = line_colors(fig)
        for m in METHODS:
            assert drawn[m] == pytest.approx(colors[m]), (name, m)
    assert colors["variational_jko"] == pytest.approx(to_rgb("#0173b2")), "a class's own colour"


def test_the_sample_figure_uses_the_method_colours_and_keeps_titles_apart() -> None:
    from wgfbench.problems.gaussian import GaussianLaw

    reference = GaussianLaw(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    samples = {m: torch.randn(300, 2, generator=gen, dtype=torch.float64) for m in METHODS[:3]}
    notes = {m: "t = 1 (timeout)" for m in samples}
    fig = samples_panels(reference, samples, title=f"{LONG_EXPERIMENT}, d = 2: samples of P_K", notes=notes)
    assert collisions(fig) == []
    colors = figures.method_colors(samples)
    for ax in fig.axes[1:]:
        method = ax.get_title().split("\n")[0]
        assert to_rgb(ax.collections[-1].get_facecolor()[0][:3]) == pytest.approx(colors[method]), method


def test_the_timing_table_figure_uses_the_method_colours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("timing_table", ROOT / "scripts" / "timing_table.py")
    timing_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timing_table)
    labels = [
        ("variational_jko", "variational_jko"),
        ("variational_jko", "variational_jko (budget=plateau)"),
        ("exact_jko", "exact_jko"),
    ]
    rows = [
        dict(method=m, label=label, dim=d, step_s=0.01 * d * (i + 1), status="ok")
        for i, (m, label) in enumerate(labels)
        for d in (2, 8, 32)
    ]
    drawn = {}
    monkeypatch.setattr(plt, "close", lambda fig=None: drawn.setdefault("fig", fig))
    prov = {"device": "cpu", "device_name": "cpu", "torch_version": "2", "git_commit": "0" * 40}
    timing_table.figure(pd.DataFrame(rows), prov, tmp_path)
    fig = drawn["fig"]
    colors = figures.method_colors(["variational_jko", "exact_jko"])
    legend = line_colors(fig)
    assert legend["variational_jko"] == pytest.approx(colors["variational_jko"])
    assert legend["variational_jko (budget=plateau)"] == pytest.approx(colors["variational_jko"])
    assert legend["exact_jko"] == pytest.approx(colors["exact_jko"])
    assert collisions(fig) == []


def test_values_a_log_axis_cannot_show_are_named_in_a_footnote() -> None:
    # an unbiased estimate below 0 for one method at the report step of one seed (e.g. energy distance near 0)
    df = records(
        methods=["variational_jko", "exact_jko"],
        dims=(2, 4),
        value=lambda m, d, s, k: -1e-4 if (m == "exact_jko" and k == 3 and s == 0) else 10.0 ** (-1 - 0.3 * k),
    )
    fig = figures.error_vs_time_figure(df, "symkl_moment", "e")
    notes = [t for t in fig.texts if "not drawn" in t.get_text()]
    assert len(notes) == 1 and "2 of 48 values" in notes[0].get_text().replace("\n", " ")
    assert "unbiased estimate" in notes[0].get_text().replace("\n", " ")
    fig = figures.error_vs_dim_figure(df, "symkl_moment", "e")
    assert "2 of 12 runs' values" in " ".join(t.get_text().replace("\n", " ") for t in fig.texts)
    # a method with 0 seconds per step (identity) is named, not drawn as an empty legend entry
    timed = records(methods=["variational_jko", "exact_jko", "identity"], dims=(2, 4))
    timed.loc[timed["method"] == "identity", "time_step_s"] = timed.loc[timed["method"] == "identity", "k"] * 0.0
    fig = figures.seconds_vs_dim_figure(timed, "e")
    assert "identity" not in line_colors(fig)
    assert any("identity" in t.get_text() and "0 seconds" in t.get_text() for t in fig.texts)


def test_a_figure_of_one_method_is_not_drawn() -> None:
    one = records(methods=["variational_jko"])
    assert all(fig is None for fig in suite_like_figures(one).values())
    # identity takes 0 s per step: with one other method left, the timing figure compares nothing
    two = records(methods=["variational_jko", "identity"])
    two.loc[two["method"] == "identity", "time_step_s"] = 0.0
    assert figures.seconds_vs_dim_figure(two) is None


def test_suite_figures_plot_a_metric_that_compares_methods_after_p0(tmp_path: Path, monkeypatch) -> None:
    """A moment fit defined at P_0 only (a Gaussian start of a non-Gaussian flow) is skipped for the first metric
    that two methods report after P_0 (here W2), so the experiment's error-vs-time figure compares something."""
    rows = []
    for method in ("variational_jko", "identity"):
        for k in range(3):
            rows.append(dict(experiment="jsd", method=method, dim=1, seed=0, k=k, t=0.1 * k, status="ok",
                             report_t=0.2, symkl_moment=1e-3 if k == 0 else np.nan, w2=0.1 + 0.1 * k,
                             symkl_mc=0.05 if method == "identity" else np.nan))  # fmt: skip
    df = pd.DataFrame(rows)
    drawn = []
    monkeypatch.setattr(figures, "error_vs_time", lambda d, metric, path, title="": drawn.append(metric) or [])
    figures.suite_figures(df, tmp_path)
    assert drawn == ["w2"]  # not symkl_moment (P_0 only), not symkl_mc (one method)
    assert not figures._comparable(df, "symkl_moment") and figures._comparable(df, "w2")


def test_the_divergence_figure_draws_the_estimates_the_exact_flow_and_negative_values(tmp_path: Path) -> None:
    """The JSD flow's figure is on a linear axis: a negative kNN estimate (its bias near equilibrium) is drawn, not
    dropped, beside the exact flow's D_f(P_t || Q) (dashed) and the floor at the report step."""
    rows = []
    for method, lag in (("variational_jko", 0.0), ("identity", 1.0)):
        for seed in range(3):
            for k in range(3):
                value = 0.4 * (1 - lag) * (1 - k / 2) + lag * 0.4 - 0.03 + 0.001 * seed
                rows.append(dict(experiment="mixture", method=method, dim=5, seed=seed, k=k, t=0.5 * k, status="ok",
                                 report_t=1.0, jsd_knn=value, jsd_exact=0.4 * (1 - k / 2) + 0.005,
                                 jsd_knn_floor=-0.04 if k == 2 else np.nan,
                                 jsd_knn_floor_q95=-0.035 if k == 2 else np.nan))  # fmt: skip
    fig = figures.divergence_vs_time_figure(pd.DataFrame(rows), "mixture")
    ax = fig.axes[0]
    lines = {li.get_label(): li for li in ax.get_lines()}
    assert list(lines["exact flow (grid quadrature)"].get_ydata()) == pytest.approx([0.405, 0.205, 0.005])
    assert min(lines["variational_jko"].get_ydata()) == pytest.approx(-0.029)  # negative, drawn
    assert ax.get_yscale() == "linear"
    assert figures.divergence_vs_time_figure(pd.DataFrame(rows).drop(columns="jsd_knn")) is None
    plt.close(fig)
