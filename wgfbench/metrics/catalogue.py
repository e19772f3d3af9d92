"""The metric catalogue: what every metric column of a record is, for evaluation, tables and figures alike.

A metric has a name and columns derived from it by one rule (:func:`column`):

* ``<name>``: its value against the PDE solution P_t (for a stationary problem: the target);
* ``<name>_vs_jko``: against the exact JKO iterate of the same step size (the method's optimisation error);
* ``<name>_floor``, ``<name>_floor_sd``, ``<name>_floor_q95`` (and the same after ``_vs_jko``): its noise floor,
  the law of the metric for a perfect method with the same sample sizes (mean, standard deviation, 95% quantile;
  :mod:`wgfbench.metrics.floors`); a value is resolved when it lies above the q95;
* ``<name>_corrected``: an exactly unbiased estimate, where one exists (the moment-fit SymKL);
* ``<name>_se``: the standard error of a Monte-Carlo estimate;
* ``<name>_jko_pde``: the exact JKO iterate's own distance to P_t (the time-discretisation error, closed form).

Evaluation (:mod:`wgfbench.evaluate`) emits only catalogued columns (:func:`parse` refuses any other name, so a
typo fails loudly instead of silently dropping a table row); tables and figures iterate over :data:`METRICS`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Kind = Literal["moment", "sample", "density", "kde", "target", "porous", "jsd"]
Against = Literal["pde", "jko"]
PARTS = ("floor_q95", "floor_sd", "floor", "se", "corrected", "jko_pde")
# the sample sizes an evaluation used (moment fits, sample metrics, density metrics): recorded beside the metrics
EVAL_COLUMNS = ("n_moment", "n_sample", "n_density")
TO_JKO = " to the exact JKO iterate"


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric (module docstring).

    ``label``: what it is; ``to``: the phrase naming its reference in labels; ``transform``: "log10" where the
    tables and figures show log10 of the value (per run, before averaging); ``direction``: "lower" for an error
    (lower is better), "none" for a reported quantity; ``table``: the references it gets a table row for;
    ``primary``: its rank as an experiment's headline figure metric (lower first; None: never headline);
    ``secondary``: also drawn beside the headline metric; ``discretisation``: the problem's closed forms give the
    exact JKO iterate's own value (column ``<name>_jko_pde``), which tables name ``exact_label`` (the metric
    between two exact laws, e.g. "SymKL to the PDE solution").
    """

    name: str
    label: str
    kind: Kind
    transform: Literal["log10"] | None = None
    floor: bool = False
    se: bool = False
    against: tuple[Against, ...] = ("pde",)
    direction: Literal["lower", "none"] = "lower"
    to: str = " to the PDE solution"
    table: tuple[Against, ...] = ("pde",)
    primary: int | None = None
    secondary: bool = False
    discretisation: bool = False
    exact_label: str = ""
    corrected: bool = False

    def title(self, against: Against = "pde") -> str:
        """The row label of a table (and a figure's axis): e.g. "log10 SymKL (moment fit) to the PDE solution"."""
        prefix = "log10 " if self.transform == "log10" else ""
        return prefix + self.label + (TO_JKO if against == "jko" else self.to)


METRICS: tuple[Metric, ...] = (
    Metric("symkl_moment", "SymKL (moment fit)", "moment", "log10", floor=True, against=("pde", "jko"),
           table=("pde", "jko"), primary=0, discretisation=True, exact_label="SymKL to the PDE solution",
           corrected=True),
    Metric("bures_w2_moment", "Bures W2 (moment fit)", "moment", floor=True, against=("pde", "jko"), table=(),
           discretisation=True, exact_label="W2 to the PDE solution"),
    Metric("symkl_mc", "SymKL (Monte Carlo, model density)", "density", "log10", floor=True, se=True,
           against=("pde", "jko"), primary=2, secondary=True),
    Metric("symkl_kde", "SymKL (Monte Carlo, KDE of the samples; d <= 3)", "kde", "log10", floor=True, se=True),
    Metric("symkl_moment_target", "SymKL (moment fits)", "target", "log10", floor=True, to=" to the target mixture",
           primary=1),
    Metric("ksd", "KSD² (RBF, U-statistic)", "target", floor=True, to=" to the target mixture", secondary=True),
    Metric("sliced_energy", "sliced energy distance (Hertrich & Gruhlke)", "target", floor=True,
           to=" to the target", secondary=True),
    Metric("log_z", "log-normaliser estimate (truth 0)", "target", se=True, direction="none", to=""),
    Metric("w2", "W2 (exact OT on samples)", "sample", floor=True, against=("pde", "jko"), primary=3,
           discretisation=True, exact_label="W2 to the PDE solution"),
    Metric("sw2", "sliced W2", "sample", floor=True, against=("pde", "jko"), primary=4),
    Metric("energy", "energy distance", "sample", floor=True, against=("pde", "jko")),
    Metric("gen_entropy_rel_err", "relative error of the generalised entropy (model densities)", "porous", to="",
           discretisation=True, exact_label="relative error of the generalised entropy"),
    Metric("gen_entropy_rel_err_knn", "relative error of the generalised entropy (kNN, samples only)", "porous",
           floor=True, to=""),
    Metric("second_moment_rel_err", "relative error of the second moment", "porous", floor=True, to="",
           discretisation=True, exact_label="relative error of the second moment"),
    Metric("frac_outside_support", "fraction of model mass outside the exact support", "porous", to=""),
    Metric("gen_entropy_exact", "generalised entropy of the exact solution", "porous", direction="none", to="",
           table=()),
    Metric("kl_model_exact", "KL(model || exact) (Monte Carlo)", "porous", se=True, to="", table=()),
    Metric("kl_exact_model", "KL(exact || model) (Monte Carlo)", "porous", se=True, to="", table=()),
    Metric("frac_exact_outside_model_support", "fraction of exact mass where the model density is 0", "porous",
           to="", table=()),
    Metric("jsd_knn", "Jensen-Shannon divergence D_f(P_k || Q) (kNN density of the samples)", "jsd", floor=True,
           se=True, to=" (floor: the same estimate on exact samples of P_t)"),
    Metric("jsd_exact", "Jensen-Shannon divergence D_f(P_t || Q) of the exact flow (grid quadrature)", "jsd",
           direction="none", to="", table=()),
)  # fmt: skip
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def column(name: str, against: Against = "pde", part: str | None = None) -> str:
    """The record column of metric ``name`` against a reference, or one of its parts (module docstring)."""
    metric = BY_NAME[name]  # a KeyError names an uncatalogued metric
    if against not in metric.against:
        raise ValueError(f"metric {name!r} is not computed against {against!r}")
    if part == "jko_pde":
        return f"{name}_jko_pde"
    if part is not None and part not in PARTS:
        raise ValueError(f"unknown column part {part!r}; allowed: {PARTS}")
    return name + ("_vs_jko" if against == "jko" else "") + (f"_{part}" if part else "")


def parse(col: str) -> tuple[Metric | None, Against, str | None]:
    """(metric, reference, part) of a metric column ((None, "pde", None) for an evaluation-size column); ValueError
    for a name that is not a catalogued column."""
    if col in EVAL_COLUMNS:
        return None, "pde", None
    for part in (*PARTS, None):
        stem = col[: -len(part) - 1] if part and col.endswith(f"_{part}") else (col if part is None else None)
        if stem is None:
            continue
        for against, suffix in (("jko", "_vs_jko"), ("pde", "")):
            name = stem[: -len(suffix)] if suffix and stem.endswith(suffix) else (stem if not suffix else None)
            if name in BY_NAME and column_exists(BY_NAME[name], against, part):
                return BY_NAME[name], against, part
    raise ValueError(f"{col!r} is not a catalogued metric column (wgfbench.metrics.catalogue)")


def column_exists(metric: Metric, against: Against, part: str | None) -> bool:
    if against not in metric.against:
        return False
    if part == "jko_pde":
        return against == "pde" and metric.discretisation
    if part is None:
        return True
    if part.startswith("floor"):
        return metric.floor
    return (part == "se" and metric.se) or (part == "corrected" and metric.corrected)
