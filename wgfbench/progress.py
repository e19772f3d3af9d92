"""Progress of one run on stderr: a bar on a terminal, one plain line per finished JKO step anywhere else.

Under Snakemake a job's stderr is its log file (``<out>/logs/<experiment>/<method>/d<dim>_s<seed>.log``), where a
progress bar is one long line of carriage returns. So when the stream is not a terminal, every finished JKO step
prints one line, and the run's end one more::

    ou/variational_jko/d2/s0 step 3/10 t=0.15 train 1.23 s regen 0.05 s eval 0.45 s loss -1.234
    ou/variational_jko/d2/s0 ok: 10/10 steps in 21.4 s

(``eval -``: the step was not evaluated; ``loss -``: the method optimises nothing). On a terminal a tqdm bar
shows the same training, regeneration and evaluation seconds of the last step as its postfix.
"""

from __future__ import annotations

import math
import sys
from typing import IO, Literal

Mode = Literal["bar", "lines", "off"]


def choose_mode(progress: bool | str, stream: IO[str]) -> Mode:
    """``progress`` True: a bar if ``stream`` is a terminal, else lines; False: nothing; "bar" / "lines": that."""
    if progress is False:
        return "off"
    if progress is True:
        isatty = getattr(stream, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"
    if progress not in ("bar", "lines", "off"):
        raise ValueError(f"progress must be True, False, 'bar', 'lines' or 'off', got {progress!r}")
    return progress  # type: ignore[return-value]


def _seconds(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3g} s"


def _number(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


class Progress:
    """Reports the finished steps of one run (module docstring). ``stream``: default sys.stderr at creation."""

    def __init__(
        self, job: str, total: int, initial: int = 0, progress: bool | str = True, stream: IO[str] | None = None
    ):
        self.job, self.total = job, int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.mode = choose_mode(progress, self.stream)
        self.bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(desc=job, unit="step", initial=initial, total=total, file=self.stream)

    def step(self, k: int, t: float, train_s: float, regen_s: float, eval_s: float | None, loss: float | None) -> None:
        """Step ``k`` (flow time ``t``) finished: its seconds of training, regeneration and evaluation (None: not
        evaluated), and its loss."""
        if self.mode == "lines":
            line = (
                f"{self.job} step {k}/{self.total} t={t:.4g} train {_seconds(train_s)} regen {_seconds(regen_s)} "
                f"eval {_seconds(eval_s)} loss {_number(loss)}"
            )
            print(line, file=self.stream, flush=True)
        elif self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(
                f"train {_seconds(train_s)}, regen {_seconds(regen_s)}, eval {_seconds(eval_s)}, loss {_number(loss)}"
            )

    def close(self, status: str | None = None, last_good: int = 0, wall_s: float = math.nan, message: str = "") -> None:
        """Close the bar; in line mode, print the run's status line (``status`` None: no line, e.g. an interrupted
        run, which the caller reports)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode == "lines" and status is not None:
            line = f"{self.job} {status}: {last_good}/{self.total} steps in {wall_s:.3g} s"
            print(line + (f" ({message})" if message else ""), file=self.stream, flush=True)
