"""The evaluation record schema: one constant, and the configuration identity of a record.

A results file is ``{"schema": EVAL_SCHEMA, "runs": [record, ...]}``; a record is
``{"method", "mode", "seed", "model", "dims", "metric", "per_dim", "config", "config_key"}``
(see :mod:`mrl.evaluate.perdim`). ``config`` is the run's training configuration without the fields
that do not change the model (seed, device, threads, progress, data_root); ``config_key`` hashes it,
so a report averages only records of one configuration (different seeds), never different models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mrl.errors import MRLError

EVAL_SCHEMA = "mrl.eval/1"
# Training-config fields that do not define the model: records differing only in them are seeds of one configuration.
NOT_CONFIG = frozenset({"seed", "device", "threads", "progress", "data_root"})


def model_config(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a training config that define the model (for ``mode: ff`` also without the
    single feature size: FF-2 ... FF-512 form one family, one model per d)."""
    out = {k: v for k, v in config.items() if k not in NOT_CONFIG}
    if out.get("mode") == "ff":
        out.pop("matryoshka_dims", None)
    return out


def config_key(*parts: Any) -> str:
    """A short stable hash of JSON-able ``parts`` (e.g. a method name and a model config)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def results_document(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON document of an evaluation: ``{"schema": EVAL_SCHEMA, "runs": records}``."""
    return {"schema": EVAL_SCHEMA, "runs": records}


def read_results(doc: Any, source: str | Path) -> list[dict[str, Any]]:
    """The records of a results document, or an error naming ``source`` if it is not one."""
    if not isinstance(doc, dict) or doc.get("schema") != EVAL_SCHEMA or not isinstance(doc.get("runs"), list):
        raise MRLError(f"{source} is not an `mrl eval` results file (schema {EVAL_SCHEMA}); pass the JSON written by `mrl eval` or `mrl eval-text`.")
    for rec in doc["runs"]:
        if not isinstance(rec, dict) or not isinstance(rec.get("per_dim"), dict):
            raise MRLError(f"{source} holds a record without per_dim results; regenerate it with `mrl eval`.")
    return doc["runs"]


def is_results_file(path: str | Path) -> bool:
    """Whether ``path`` holds an evaluation results document (what ``--overwrite`` may replace)."""
    try:
        read_results(json.loads(Path(path).read_text(encoding="utf-8")), path)
    except (OSError, ValueError, MRLError):
        return False
    return True


def results_writer(out: str | Path, *, overwrite: bool = False, inputs: Iterable[Any] = ()) -> AbstractContextManager[Any]:
    """Lock and check ``out`` before an evaluation writes its results there (:func:`mrl.io.open_files`):
    ``overwrite`` replaces only a previous results file, never another file or one of ``inputs``
    (list the files of input folders, :func:`mrl.io.input_files`)."""
    from mrl.io import open_files

    return open_files(out, EVAL_SCHEMA, overwrite=overwrite, inputs=inputs, sidecar=False, owned=is_results_file)
