"""What the Snakefile needs beyond the suite: its configuration, checked with one line per mistake, where each run's
record lives, which runs a command-line selection names, and the state of the records it finds before it builds its
jobs.

* :func:`validate_config`: the configuration (config/config.yaml with every ``--config`` / ``--configfile``
  override) against its JSON schema (workflow/schemas/config.schema.yaml) through ``snakemake.utils.validate``; a
  wrong value is one line (``--config KEY=VALUE: must be <the property's description>``) and exit status 2.
* :func:`config_value`: a ``--config KEY=VALUE`` item of the right type, or one line and exit status 2 (for what a
  schema cannot say, e.g. a default that depends on the suite).
* :func:`record_path`: the one place that names a run's record file (the workflow's targets, ``run-suite``).
* :func:`select_runs`: the runs of a suite that ``--only KEY=VALUE,...`` filters name, or one line per mistake.
* :func:`prepare_records`: for every run of the suite whose record exists, check that it is a readable record of
  the same run (its ``run_hash``, :func:`wgfbench.records.run_hash`): a truncated or foreign file, or a record of a
  run the suite has since changed, is moved aside (``<record>.stale-<reason>``, never deleted) so that Snakemake
  re-runs exactly that run; every move is one line on stderr. Records without a run hash (written before it
  existed) are kept as they are. A record kept aside under its run hash is put back when the suite returns to
  that specification (so an edit that is undone, or a dry run of an edit, costs no re-run).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wgfbench.records import RecordError, read_record, record_name, run_hash

# what ``--only`` can select on: the fields of a run spec that name a suite's runs
SELECT_KEYS = ("experiment", "problem", "method", "dim", "seed")


def validate_config(config: dict, schema: str | os.PathLike) -> None:
    """Check ``config`` against the JSON schema file ``schema`` with ``snakemake.utils.validate`` (which also fills
    in the schema's defaults); a violation stops the workflow with one line naming the key and what it must be."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(schema))
    except WorkflowError as err:
        # Snakemake flattens the violation into its message text: find it again, as an object, for the one line
        error = _violation(config, schema)
        sys.stderr.write(_one_line(_config_message(error) if error is not None else str(err)) + "\n")
        raise SystemExit(2) from None


def _violation(config: dict, schema: str | os.PathLike):
    """The most relevant violation of ``schema`` by ``config`` (jsonschema's best match), or None."""
    import yaml
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    with open(schema, encoding="utf-8") as f:
        document = yaml.safe_load(f)
    return best_match(Draft202012Validator(document).iter_errors(config))


def _config_message(error) -> str:
    """One sentence for a schema violation: the key, the value given and what it must be."""
    if error.validator == "additionalProperties":
        known = ", ".join(sorted(error.schema.get("properties", {})))
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"--config {', '.join(map(str, unknown))}: unknown key (known: {known})"
    if error.validator == "required":
        return f"config: {error.message}"
    key = ".".join(str(p) for p in error.absolute_path) or "(config)"
    what = error.schema.get("description") or error.message
    return f"--config {key}={error.instance!r}: must be {what}"


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_out(suite_name: str) -> str:
    """Where a suite's outputs go unless ``out`` is given: output/<suite>/ (ignored by git), never the committed
    results/<suite>/."""
    return f"output/{suite_name}"


def record_path(out: str, run) -> str:
    """The record file of ``run`` (a :class:`~wgfbench.suites.RunSpec`) under the output folder ``out``, as text:
    Snakemake matches targets by their text, so ``out`` is kept as given (a :class:`~pathlib.Path` would drop a
    leading ``./``); the layout is :func:`wgfbench.records.record_name`."""
    return f"{out}/{record_name(run)}"


class SelectionError(ValueError):
    """An ``--only`` filter that names no key or value of the suite; ``errors`` holds one line per mistake."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def select_runs(runs: list, only: Iterable[str]) -> list:
    """The runs matched by any of the ``--only`` filters (all runs when there are none).

    A filter is ``KEY=VALUE[,KEY=VALUE...]`` with keys from :data:`SELECT_KEYS`: a run matches it when it has every
    named key's value, and a key named twice in one filter takes either value (``dim=2,dim=4``); several filters
    select the union of what each matches. A key that is not a selectable field, a value that no run of the suite
    has, a filter without ``=`` and a filter that matches nothing are each one line of :class:`SelectionError`.
    """
    runs = list(runs)
    values = {key: {str(getattr(r, key)) for r in runs} for key in SELECT_KEYS}
    errors: list[str] = []
    filters: list[dict[str, set[str]]] = []
    for text in only:
        wanted: dict[str, set[str]] = {}
        for item in (part.strip() for part in text.split(",")):
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                errors.append(_one_line(f"--only {text!r}: {item!r} is not KEY=VALUE (keys: {', '.join(SELECT_KEYS)})"))
            elif key not in SELECT_KEYS:
                errors.append(_one_line(f"--only {text!r}: unknown key {key!r} (keys: {', '.join(SELECT_KEYS)})"))
            elif value not in values[key]:
                have = ", ".join(sorted(values[key], key=lambda v: (len(v), v)))
                errors.append(_one_line(f"--only {text!r}: no run of the suite has {key}={value} (it has: {have})"))
            else:
                wanted.setdefault(key, set()).add(value)
        filters.append(wanted)
    if errors:
        raise SelectionError(errors)
    if not filters:
        return runs
    chosen = [r for r in runs if any(all(str(getattr(r, k)) in v for k, v in f.items()) for f in filters)]
    if not chosen:
        raise SelectionError([_one_line(f"--only {' --only '.join(only)}: no run of the suite matches every key")])
    return chosen


def config_value(config: dict, key: str, default: Any, kind: type, allowed: str) -> Any:
    """``config[key]`` as ``kind`` (default when absent); a wrong value stops the workflow with one line."""
    value = config.get(key, default)
    try:
        if kind is int and isinstance(value, str):
            value = int(value.strip())
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ValueError
    except (ValueError, TypeError):
        sys.stderr.write(f"--config {key}={value!r}: must be {allowed}\n")
        raise SystemExit(2) from None
    return value


def prepare_records(runs: Iterable, record_path: Callable[[Any], str]) -> list[str]:
    """Move aside the records that do not belong to their run (module docstring); returns the messages."""
    messages = []
    for spec in runs:
        path = Path(record_path(spec))
        if path.exists():
            try:
                stored = _stored_run_hash(path)
            except RecordError as e:
                messages.append(_move_aside(path, "unreadable", str(e)))
            else:
                if stored is not None and stored != run_hash(spec):
                    why = f"{path}: made by another specification of this run"
                    messages.append(_move_aside(path, str(stored), why))
        kept = path.with_name(f"{path.name}.stale-{run_hash(spec)}")
        if not path.exists() and kept.exists():  # the suite is back at a specification whose record was kept
            kept.rename(path)
            os.utime(path)  # newer than the tables made without it, so that they are made again
            messages.append(f"{path}: the record of this specification, kept as {kept.name}, is put back")
    for m in messages:
        sys.stderr.write(m + "\n")
    return messages


def _stored_run_hash(path: Path) -> str | None:
    """The record's run hash (None for a record written before run hashes existed); RecordError if unreadable."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as e:
        raise RecordError(f"{path}: not a readable run record ({type(e).__name__})") from None
    if "run_hash" not in names:
        return None
    return str(read_record(path, columns=["run_hash"])["run_hash"].iloc[0])


def _move_aside(path: Path, tag: str, why: str) -> str:
    target = path.with_name(f"{path.name}.stale-{tag}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.stale-{tag}-{n}")
        n += 1
    path.rename(target)
    return f"{why}; kept as {target.name}, the run is re-run"
