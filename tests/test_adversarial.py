"""Hostile input and faults, as an adversarial user would try them (issue 14): nothing runs that should not,
nothing finished is lost, every mistake is one line.

* random suite documents, names and files (Hypothesis): validation is total (a :class:`SuiteError` of one-line
  messages, or a suite whose names are safe path components) and cheap;
* documents built to exhaust: alias bombs, deep nesting, huge seed counts and dimensions, integers past 64 bits,
  other encodings;
* faults of the machine (disk full, read-only output) are reported as such, exit 75 and leave no record; an
  overflow is ``diverged``; SIGINT and the loss of the workflow's master stop a run resumably, with one line;
* records: a truncated record gets one line (``forget``, ``table``) and is moved aside and re-run by the
  workflow; a suite edit re-runs exactly the runs it changed; a finished run whose record was lost is not
  computed again; file modes follow the umask; a bad ``--config`` value is one line;
* reports: a suite without a finished step makes tables and figures, not a traceback; experiments whose names
  differ after a dot get figures of their own.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wgfbench import cli
from wgfbench.evaluate import EvalSpec
from wgfbench.records import read_records, run_hash
from wgfbench.runner import done_path, run
from wgfbench.suites import MAX_DIM, MAX_SEED, NAME_RE, SuiteError, load_suite, parse_suite
from wgfbench.workflow import prepare_records

ROOT = Path(__file__).resolve().parents[1]
TINY_EVAL = EvalSpec(n_samples=200, n_w2=50, n_mc=32, every=1)
BASE = {
    "name": "hostile",
    "eval": {"n_samples": 200, "n_w2": 50, "n_mc": 32},
    "experiments": {
        "ou": {
            "problem": "ou",
            "dims": [2],
            "seeds": [0, 1],
            "step_size": 0.1,
            "n_steps": 2,
            "methods": {"exact_jko": {}, "identity": {}},
        }
    },
}


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1")


def one_line_errors(e: SuiteError) -> None:
    assert e.errors, "a SuiteError names at least one mistake"
    for msg in e.errors:
        assert "\n" not in msg and len(msg) < 2000, msg


def check_total(doc, path: str = "<random>") -> None:
    """Validation either refuses with one-line messages or accepts a suite whose names are safe path components."""
    try:
        suite = parse_suite(doc, path)
    except SuiteError as e:
        one_line_errors(e)
        return
    for name in {suite.name, *(r.experiment for r in suite.runs)}:
        assert NAME_RE.match(name) and name not in {".", ".."} and not name.startswith(("-", ".")), name
        assert Path(name).name == name


# --- validation is total: random documents and names -----------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
PATHS = [
    ("name",),
    ("eval",),
    ("eval", "n_samples"),
    ("defaults",),
    ("experiments",),
    ("experiments", "ou"),
    ("experiments", "ou", "dims"),
    ("experiments", "ou", "seeds"),
    ("experiments", "ou", "step_size"),
    ("experiments", "ou", "n_steps"),
    ("experiments", "ou", "report_t"),
    ("experiments", "ou", "problem"),
    ("experiments", "ou", "problem_params"),
    ("experiments", "ou", "methods"),
    ("experiments", "ou", "methods", "exact_jko"),
    ("experiments", "ou", "methods", "identity", "params"),
    ("experiments", "ou", "time_budget_s"),
]


def planted(path: tuple[str, ...], value) -> dict:
    doc = copy.deepcopy(BASE)
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[path[-1]] = value
    return doc


@pytest.fixture(scope="module", autouse=True)
def warm_registry() -> None:
    parse_suite(copy.deepcopy(BASE))  # imports every module once, so that the deadlines below time validation


@settings(max_examples=150, deadline=10000, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_anywhere_is_refused_in_one_line_or_accepted_safely(path, value) -> None:
    check_total(planted(path, value))


@settings(max_examples=200, deadline=3000)
@given(name=st.text(min_size=0, max_size=80))
def test_any_suite_or_experiment_name_is_a_safe_path_component_or_refused(name) -> None:
    check_total(planted(("name",), name))
    doc = copy.deepcopy(BASE)
    doc["experiments"] = {name: doc["experiments"]["ou"]}
    check_total(doc)


@pytest.mark.parametrize("name", [".", "..", "-rf", "--out", "a/b", "../x", "a\x00b", "a\nb", "x" * 65, ".hidden", ""])
def test_unsafe_names_are_refused(name: str) -> None:
    for doc in (planted(("name",), name), {**BASE, "experiments": {name: BASE["experiments"]["ou"]}}):
        with pytest.raises(SuiteError) as e:
            parse_suite(copy.deepcopy(doc))
        one_line_errors(e.value)


@settings(max_examples=100, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_file_is_a_suite_or_one_line_per_mistake(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(data)
    try:
        load_suite(path)
    except SuiteError as e:
        one_line_errors(e)


# --- documents built to exhaust: refused quickly in one line ------------------------------------------------------
def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join(['*a' + str(i - 1)] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: bomb\nexperiments:\n  ou:\n    problem: ou\n    dims: *a{levels - 1}\n"


HOSTILE_TEXTS = {
    "alias-bomb": (alias_bomb(), "once YAML aliases are expanded"),
    "deep-nesting": ("name: deep\nexperiments: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    "seed-count-1e8": (yaml.safe_dump(planted(("experiments", "ou", "seeds"), 100_000_000)), "seed count"),
    "seed-2^64": (yaml.safe_dump(planted(("experiments", "ou", "seeds"), [2**64])), f"<= {MAX_SEED}"),
    "huge-dim": (yaml.safe_dump(planted(("experiments", "ou", "dims"), [10**9])), f"<= {MAX_DIM}"),
    "steps-2^70": (yaml.safe_dump(planted(("experiments", "ou", "n_steps"), 2**70)), "n_steps"),
    "compile-off-once": (
        yaml.safe_dump(
            planted(("experiments", "ou", "methods"), {"variational_jko": {"params": {"compile": False}}})
        ).replace("false", "off"),
        "compile",
    ),
}


@pytest.mark.parametrize("case", HOSTILE_TEXTS, ids=list(HOSTILE_TEXTS))
def test_documents_built_to_exhaust_are_refused_quickly_in_one_line(tmp_path: Path, case: str) -> None:
    text, expected = HOSTILE_TEXTS[case]
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(SuiteError) as e:
        load_suite(path)
    assert time.perf_counter() - start < 20, "validation must stay cheap"  # generous: shared, noisy machines
    one_line_errors(e.value)
    assert any(expected in m for m in e.value.errors), e.value.errors
    if case == "compile-off-once":
        assert len(e.value.errors) == 1, e.value.errors


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "utf-32"])
def test_other_encodings_are_one_line(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "encoded.yaml"
    path.write_bytes((yaml.safe_dump(BASE) + "description: Schrödinger bridge ≈ JKO\n").encode(encoding, "replace"))
    result = subprocess.run(
        [sys.executable, "-m", "wgfbench.cli", "validate", str(path)], env=env(), capture_output=True, text=True
    )
    assert result.returncode == 2
    mistakes = [line for line in result.stderr.strip().splitlines() if line != "invalid suite:"]
    assert len(mistakes) == 1 and "not UTF-8 text" in mistakes[0] and "Traceback" not in result.stderr, result.stderr


# --- faults of the machine and of the method -------------------------------------------------------------------------
def tiny_spec(method: str = "exact_jko", params: dict | None = None, **kw):
    suite = parse_suite(copy.deepcopy(BASE))
    base = next(r for r in suite.runs if r.method == "exact_jko")
    import dataclasses

    return dataclasses.replace(base, method=method, method_params=params or {}, **kw)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT])
def test_a_machine_fault_is_not_recorded_as_the_methods_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, code: int
) -> None:
    import wgfbench.records as records

    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(BASE))
    out, ckpt = tmp_path / "runs" / "r.parquet", tmp_path / "ckpt" / "r.pt"
    real_replace = os.replace

    def failing_replace(src, dst):  # the final rename of the record (and of checkpoints) meets a full/read-only disk
        if str(dst).endswith(".parquet"):
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(records.os, "replace", failing_replace)
    argv = ["run", "--suite", str(suite), "--job", "ou/exact_jko/d2/s0", "--out", str(out), "--checkpoint", str(ckpt)]
    rc = cli.main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 75, err
    assert "infrastructure error, not a property of the method" in err and os.strerror(code) in err
    assert not out.exists() and not list(tmp_path.rglob("*.tmp")), "no record and no half-written file"
    assert ckpt.exists(), "the checkpoint stays for the retry"

    monkeypatch.setattr(records.os, "replace", real_replace)  # the disk is back: the retry records the run
    assert cli.main([*argv, "--no-progress"]) == 0
    assert read_records([out])["status"].unique().tolist() == ["ok"]


def test_an_overflow_in_the_method_is_diverged_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wgfbench.methods.exact_jko import ExactJKO

    def overflow(self, *a, **k):
        raise OverflowError("math range error")

    monkeypatch.setattr(ExactJKO, "_advance", overflow)
    df = run(tiny_spec(), out=tmp_path / "r.parquet")
    assert df["status"].iloc[0] == "diverged" and "OverflowError" in df["message"].iloc[0]


def slow_run_cmd(tmp_path: Path, *extra: str) -> tuple[list[str], Path, Path]:
    out, ckpt = tmp_path / "runs" / "r.parquet", tmp_path / "ckpt" / "r.pt"
    cmd = [sys.executable, "-m", "wgfbench.cli", "run", "--problem", "ou", "--method", "exact_jko", "--dim", "2"]
    cmd += ["--n-steps", "5000", "--step-size", "1e-4", "--eval", "n_samples=200", "--eval", "n_w2=50"]
    cmd += ["--eval", "n_mc=32", "--out", str(out), "--checkpoint", str(ckpt), "--no-progress", *extra]
    return cmd, out, ckpt


def wait_for_checkpoint(proc: subprocess.Popen, ckpt: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), "the run never checkpointed"


def test_sigint_stops_a_run_with_one_line_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    cmd, out, ckpt = slow_run_cmd(tmp_path)
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoint(proc, ckpt)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "no record written, the run resumes from its last checkpoint" in err, err
    assert not out.exists() and ckpt.exists()


def test_a_run_stops_when_the_workflow_that_started_it_is_gone(tmp_path: Path) -> None:
    master = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    cmd, out, ckpt = slow_run_cmd(tmp_path, "--watch-pid", str(master.pid))
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_checkpoint(proc, ckpt)
        master.kill()  # SIGKILL of the master: no chance to stop its jobs
        master.wait()
        _, err = proc.communicate(timeout=60)
    finally:
        master.kill()
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "the workflow that started it is gone" in err and "Traceback" not in err, err
    assert not out.exists() and ckpt.exists()


def test_a_finished_run_whose_record_was_lost_is_not_computed_again(tmp_path: Path, caplog) -> None:
    spec = tiny_spec()
    out, ckpt = tmp_path / "runs" / "r.parquet", tmp_path / "ckpt" / "r.pt"
    first = run(spec, out=out, checkpoint=ckpt, progress=False)
    assert done_path(ckpt).exists() and not ckpt.exists()
    out.unlink()  # what Snakemake does to the output of a job it never saw finish (its master was killed)
    with caplog.at_level("INFO", logger="wgfbench.runner"):
        again = run(spec, out=out, checkpoint=ckpt, progress=False)
    assert "not computed again" in caplog.text
    pd.testing.assert_frame_equal(again, first)  # timings included: nothing was recomputed
    assert out.exists() and not done_path(ckpt).exists()
    # a different run under the same path does not take it
    run(spec, out=out, checkpoint=ckpt, progress=False)
    out.unlink()
    other = tiny_spec(seed=1)
    df = run(other, out=out, checkpoint=ckpt, progress=False)
    assert df["run_hash"].iloc[0] == run_hash(other) != run_hash(spec)


def test_record_modes_follow_the_umask(tmp_path: Path) -> None:
    code = "import os, sys; os.umask(0o027); from wgfbench import cli; sys.exit(cli.main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code,
         "run", "--problem", "ou", "--method", "exact_jko", "--dim", "2", "--n-steps", "1", "--eval", "n_samples=200",
         "--eval", "n_w2=50", "--out", str(tmp_path / "r.parquet"), "--no-progress"],
        env=env(), capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert stat.S_IMODE((tmp_path / "r.parquet").stat().st_mode) == 0o640


# --- records: truncated, foreign, of an earlier specification ---------------------------------------------------------
def test_a_truncated_record_is_one_line_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "res" / "runs" / "ou" / "exact_jko"
    run(tiny_spec(), out=runs / "d2_s0.parquet")
    good = (runs / "d2_s0.parquet").read_bytes()
    (runs / "d2_s1.parquet").write_bytes(good[: len(good) // 2])
    assert cli.main(["forget", str(tmp_path / "res"), "--status", "failed"]) == 0
    err = capsys.readouterr().err
    assert "d2_s1.parquet: not a readable run record" in err and "skipped" in err
    assert cli.main(["table", str(tmp_path / "res" / "runs"), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "d2_s1.parquet: not a readable run record" in err[0], err


def test_the_workflow_moves_aside_bad_records_and_reruns_exactly_the_changed_runs(tmp_path: Path) -> None:
    suite = parse_suite(copy.deepcopy(BASE))
    folder = tmp_path / "runs"

    def record_path(r):
        return str(folder / r.experiment / r.method / f"d{r.dim}_s{r.seed}.parquet")

    for r in suite.runs:
        run(r, out=record_path(r))
    legacy = pd.read_parquet(record_path(suite.runs[0])).drop(columns=["run_hash"])  # written before run hashes
    legacy.to_parquet(record_path(suite.runs[0]))
    truncated = Path(record_path(suite.runs[1]))
    truncated.write_bytes(truncated.read_bytes()[:100])
    edited = copy.deepcopy(BASE)
    edited["experiments"]["ou"]["methods"]["identity"] = {"time_budget_s": 60}  # changes the identity runs only
    new = parse_suite(edited)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*.parquet")}
    messages = prepare_records(new.runs, record_path)
    kept = {p for p in folder.rglob("*.parquet")}
    moved = {p.name for p in folder.rglob("*.stale-*")}
    changed = {record_path(r) for r in new.runs if r.method == "identity"}
    assert {str(p) for p in kept} == {record_path(r) for r in new.runs} - changed - {str(truncated)}
    assert all(before[p] == p.stat().st_mtime_ns for p in kept), "kept records are untouched"
    assert len(moved) == 1 + len(changed) and len(messages) == len(moved)
    assert any("not a readable run record" in m for m in messages)
    assert sum("made by another specification" in m for m in messages) == len(changed)
    assert all("\n" not in m and "re-run" in m for m in messages)
    assert prepare_records(new.runs, record_path) == [], "nothing else moves on the next invocation"


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work), "--cores", "1", *args]
    return subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    ("config", "expected"),
    [("gpu=abc", "--config gpu='abc': must be an integer"), ("gpu=1.5", "--config gpu=1.5: must be an integer")],
)
def test_a_bad_config_value_is_one_line(tmp_path: Path, config: str, expected: str) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(BASE))
    result = snakemake(tmp_path, "-n", "--config", f"suite={tmp_path / 's.yaml'}", config)
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_a_suite_edit_reruns_exactly_the_changed_runs_through_snakemake(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(BASE))
    first = snakemake(tmp_path, "--config", f"suite={suite}")
    assert first.returncode == 0, first.stderr[-3000:]
    runs = tmp_path / "output" / "hostile" / "runs" / "ou"
    edited = copy.deepcopy(BASE)
    edited["experiments"]["ou"]["methods"]["identity"] = {"time_budget_s": 60}
    suite.write_text(yaml.safe_dump(edited))
    dry = snakemake(tmp_path, "-n", "--config", f"suite={suite}")
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = set(re.findall(r"Job \d+: run (\S+)", dry.stdout + dry.stderr))
    assert planned == {"ou/identity/d2/s0", "ou/identity/d2/s1"}, dry.stdout + dry.stderr
    stale = sorted(p.name.split(".stale-")[0] for p in (runs / "identity").glob("*.stale-*"))
    assert stale == ["d2_s0.parquet", "d2_s1.parquet"], "the earlier records are kept aside, not deleted"
    kept = {p: p.stat().st_mtime_ns for p in (runs / "exact_jko").glob("*.parquet")}
    again = snakemake(tmp_path, "--config", f"suite={suite}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert kept == {p: p.stat().st_mtime_ns for p in (runs / "exact_jko").glob("*.parquet")}
    dry = snakemake(tmp_path, "-n", "--config", f"suite={suite}")
    assert not re.findall(r"Job \d+: run (\S+)", dry.stdout + dry.stderr), "nothing is left to run"
    # undoing the edit puts the records kept aside back: nothing is re-run
    identity = {p: p.read_bytes() for p in (runs / "identity").glob("*.stale-*")}
    suite.write_text(yaml.safe_dump(BASE))
    back = snakemake(tmp_path, "--config", f"suite={suite}")
    assert back.returncode == 0 and "is put back" in back.stderr, back.stderr[-3000:]
    assert not re.findall(r"Job \d+: run (\S+)", back.stdout + back.stderr)
    assert sorted(identity.values()) == sorted(p.read_bytes() for p in (runs / "identity").glob("*.parquet"))
    assert "Job" in back.stdout + back.stderr and "tables of suite hostile" in back.stdout + back.stderr
    table = pd.read_parquet(tmp_path / "output" / "hostile" / "table.parquet")
    assert set(table.loc[table["method"] == "identity", "run_hash"]) == {
        pd.read_parquet(p, columns=["run_hash"])["run_hash"].iloc[0] for p in (runs / "identity").glob("*.parquet")
    }, "the tables are made again from the records put back"


# --- reports ---------------------------------------------------------------------------------------------------------
def test_a_suite_where_every_run_fails_at_set_up_still_has_tables_and_figures(tmp_path: Path) -> None:
    params = {"device": "cuda"} if not torch.cuda.is_available() else {"n_particles": 10**12}
    run(tiny_spec("variational_jko", params), out=tmp_path / "runs" / "ou" / "variational_jko" / "d2_s0.parquet")
    assert read_records([tmp_path / "runs"])["status"].tolist() == ["failed"]
    assert cli.main(["table", str(tmp_path / "runs"), "--out", str(tmp_path / "t")]) == 0
    text = (tmp_path / "t" / "table.md").read_text()
    assert "No run of this experiment finished with status `ok`" in text and "| failed |" in text
    assert cli.main(["plot", str(tmp_path / "t" / "table.parquet"), "--out", str(tmp_path / "f")]) == 0


def test_experiments_differing_after_a_dot_get_figures_of_their_own(tmp_path: Path) -> None:
    for experiment in ("ou.a", "ou.b"):
        for method in ("exact_jko", "identity"):
            spec = tiny_spec(method, experiment=experiment)
            run(spec, out=tmp_path / "runs" / experiment / method / "d2_s0.parquet")
    assert cli.main(["table", str(tmp_path / "runs"), "--out", str(tmp_path / "t")]) == 0
    assert cli.main(["plot", str(tmp_path / "t" / "table.parquet"), "--out", str(tmp_path / "f")]) == 0
    names = {p.name for p in (tmp_path / "f").iterdir()}
    assert any(n.startswith("ou.a") for n in names) and any(n.startswith("ou.b") for n in names), names
    assert not any(n in {"ou.png", "ou.pdf"} for n in names), names


def test_a_killed_master_leaves_no_orphans_and_its_finished_records_stand(tmp_path: Path) -> None:
    """SIGKILL of the Snakemake master (a lost login node, an OOM kill): its running job notices within seconds
    and stops resumably; after ``--unlock`` the next invocation plans only the unfinished run."""
    doc = copy.deepcopy(BASE)
    doc["experiments"]["long"] = {**doc["experiments"]["ou"], "seeds": [0], "n_steps": 5000, "step_size": 1e-4}
    doc["experiments"]["long"]["methods"] = {"exact_jko": {}}
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump(doc))
    out = tmp_path / "output" / "hostile"
    ckpt = out / "checkpoints" / "long" / "exact_jko" / "d2_s0.pt"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1"]
    master = subprocess.Popen([*cmd, "--config", f"suite={suite}"], env=env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ckpt.exists() and master.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ckpt.exists(), "the long run never started"
        jobs = [p for p in descendants(master.pid) if "--job long/exact_jko/d2/s0" in cmdline(p)]
        assert jobs, "the running job is a process below the master"
        master.kill()
        master.wait()
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{p}").exists() and "wgfbench" in cmdline(p) for p in jobs):
            assert time.monotonic() < deadline, "an orphaned job ran on after its master was killed"
            time.sleep(0.2)
    finally:
        os.killpg(master.pid, signal.SIGKILL) if master.poll() is None else None
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs" / "ou").rglob("*.parquet")}
    assert ckpt.exists() and not (out / "runs" / "long" / "exact_jko" / "d2_s0.parquet").exists()
    unlock = subprocess.run([*cmd, "--unlock", "--config", f"suite={suite}"], env=env(), capture_output=True)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    dry = subprocess.run([*cmd, "-n", "--config", f"suite={suite}"], env=env(), capture_output=True, text=True)
    planned = set(re.findall(r"Job \d+: run (\S+)", dry.stdout + dry.stderr))
    done = {f"ou/{p.parent.name}/d2/{p.stem.split('_')[1]}" for p in finished}
    every = {"long/exact_jko/d2/s0"} | {f"ou/{m}/d2/s{s}" for m in ("exact_jko", "identity") for s in (0, 1)}
    assert planned == every - done, dry.stdout[-3000:]  # only what had not finished
    assert finished == {p: p.stat().st_mtime_ns for p in (out / "runs" / "ou").rglob("*.parquet")}


def descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
