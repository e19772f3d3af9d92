"""Progress of a run (wgfbench.progress): one plain line per finished JKO step where stderr is not a terminal (a
Snakemake log), a bar with training and evaluation time on a terminal; and the start-up imports of a job."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from wgfbench.progress import Progress, choose_mode

LINE = re.compile(
    r"^(?P<job>\S+) step (?P<k>\d+)/(?P<K>\d+) t=(?P<t>\S+) train (?P<train>\S+ s|-) regen (?P<regen>\S+ s|-) "
    r"eval (?P<eval>\S+ s|-) loss (?P<loss>\S+)$"
)


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def tiny_spec(n_steps: int = 3):
    from wgfbench.suites import suite_from_args

    return suite_from_args(
        "ou",
        "exact_jko",
        2,
        n_steps=n_steps,
        eval_params={"sample_metrics": ["sw2"], "floor_reps": 20, "n_w2": 200, "n_mc": 512, "n_samples": 2000},
    )


def test_mode_follows_the_stream() -> None:
    assert choose_mode(True, io.StringIO()) == "lines"
    assert choose_mode(True, FakeTTY()) == "bar"
    assert choose_mode(False, FakeTTY()) == "off"
    assert choose_mode("bar", io.StringIO()) == "bar"
    with pytest.raises(ValueError):
        choose_mode("fancy", io.StringIO())


def test_runner_prints_one_line_per_step_when_stderr_is_not_a_terminal(monkeypatch, capsys) -> None:
    from wgfbench.runner import run

    stream = io.StringIO()  # not a terminal, as a Snakemake log file
    monkeypatch.setattr(sys, "stderr", stream)
    df = run(tiny_spec(3))
    text = stream.getvalue()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("ou/exact_jko/d2/s0 ")]
    steps = [LINE.match(line) for line in lines[:-1]]
    assert all(steps), lines
    assert [int(m["k"]) for m in steps] == [1, 2, 3] and {m["K"] for m in steps} == {"3"}
    ts = [float(m["t"]) for m in steps]
    assert ts == pytest.approx(df["t"].iloc[1:].tolist(), rel=1e-3)
    assert all(m["eval"] != "-" for m in steps)  # every step is evaluated (every=1)
    assert lines[-1].startswith("ou/exact_jko/d2/s0 ok: 3/3 steps in ")


def test_tty_bar_shows_training_and_evaluation_time() -> None:
    stream = FakeTTY()
    p = Progress("job", 2, progress=True, stream=stream)
    assert p.mode == "bar" and p.bar is not None
    p.step(1, 0.05, 1.5, 0.0, 0.25, -1.0)
    postfix = p.bar.postfix
    p.step(2, 0.1, 1.5, 0.0, None, float("nan"))
    p.close("ok", 2, 3.0)
    assert "train 1.5 s" in postfix and "eval 0.25 s" in postfix and "loss -1" in postfix
    out = stream.getvalue()
    assert "\r" in out and "eval -" in out  # a bar (redrawn in place); the unevaluated step says so
    assert " ok: " not in out  # the status line is the lines mode's; the CLI prints its own


def test_runner_bar_when_forced(monkeypatch) -> None:
    from wgfbench.runner import run

    stream = FakeTTY()
    monkeypatch.setattr(sys, "stderr", stream)
    run(tiny_spec(2), progress="bar")
    out = stream.getvalue()
    assert "ou/exact_jko/d2/s0" in out and "2/2" in out and "train " in out and "eval " in out
    assert not re.search(r"^ou/exact_jko/d2/s0 step ", out, re.M)


def test_lines_mode_status_line_carries_the_message() -> None:
    stream = io.StringIO()
    p = Progress("job", 5, progress=True, stream=stream)
    p.step(1, 0.05, 0.1, 0.02, None, None)
    p.close("diverged", 1, 2.0, "loss is nan")
    first, last = stream.getvalue().splitlines()
    assert LINE.match(first)["eval"] == "-" and LINE.match(first)["loss"] == "-"
    assert last == "job diverged: 1/5 steps in 2 s (loss is nan)"


def test_silent_when_progress_is_off() -> None:
    stream = FakeTTY()
    p = Progress("job", 2, progress=False, stream=stream)
    p.step(1, 0.05, 0.1, 0.0, 0.1, 0.0)
    p.close("ok", 1, 1.0)
    assert stream.getvalue() == ""


@pytest.mark.parametrize("module", ["wgfbench.cli", "wgfbench.runner", "wgfbench"])
def test_job_start_up_imports_neither_pot_nor_matplotlib(module: str) -> None:
    """What a job imports before it runs: POT, matplotlib, scipy.stats and pandas take seconds and no job needs them
    at start (POT is imported where exact W2 is computed, matplotlib where a figure is drawn; pandas loads when the
    record is made, after the steps: pyarrow imports it to build any array)."""
    code = (
        f"import sys, {module}; "
        "heavy = [m for m in ('ot', 'matplotlib', 'scipy.stats', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing {module} imported {out}"


def test_import_wgfbench_does_not_import_torch() -> None:
    code = "import sys, wgfbench as wb; print('torch' in sys.modules, 'wgfbench.runner' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_a_job_without_exact_w2_steps_without_pot_pandas_or_matplotlib() -> None:
    """In a fresh interpreter, while the steps of exact_jko on OU d = 2 (exact W2 left out) run, none of the heavy
    modules is loaded: the progress line of every step sees sys.modules without them."""
    code = """
import io, json, sys
from wgfbench.runner import run_record
from wgfbench.suites import suite_from_args

class Seen(io.StringIO):
    loaded = []
    def write(self, text):
        if " step " in text:
            self.loaded.append([m for m in ("ot", "pandas", "matplotlib", "scipy.stats") if m in sys.modules])
        return super().write(text)

sys.stderr = Seen()
spec = suite_from_args("ou", "exact_jko", 2, n_steps=2,
                       eval_params={"sample_metrics": ["sw2"], "n_w2": 200, "n_samples": 2000, "n_mc": 512})
table = run_record(spec, progress="lines")
print(json.dumps({"loaded": Seen.loaded, "status": table["status"][0].as_py()}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "ok" and result["loaded"] == [[], []]
