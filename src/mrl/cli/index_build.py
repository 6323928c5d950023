"""The work of ``mrl index build`` and of tuning (``mrl tune``): build into a hidden staging folder and
put it in place only when complete; tune and store ``tuning.md``/``tuning.png`` with the index.

A build never changes the target folder before it has succeeded: every option is checked first
(:class:`~mrl.cli.index_options.BuildOptions`), and what can fail only later (a tuning that finds
no funnel within a RAM budget, a full disk) fails inside the staging folder, which is then removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from mrl.cli.console import console
from mrl.cli.index_options import BuildOptions, TuneOptions, load_ids, load_metadata, vector_blocks
from mrl.errors import MRLError


def check_attachable(folder: Path) -> None:
    """Refuse, before a long tuning, a ``tuning.md``/``tuning.png`` in ``folder`` that the index did not write."""
    from mrl.errors import ForeignFileError
    from mrl.index.store import owned_files, read_owned

    mine = owned_files(folder, read_owned(folder))
    for name in ("tuning.md", "tuning.png"):
        if (folder / name).exists() and name not in mine:
            raise ForeignFileError(f"{folder / name} exists and was not written by this index; move it away first (tuning stores its own {name} there, and never replaces a user's file).")


def tuning_files(result: Any) -> dict[str, bytes]:
    """``tuning.md`` and ``tuning.png`` of a tuning result, to store with the index (listed in its manifest)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        png = result.plot(Path(tmp) / "tuning.png").read_bytes()
    return {"tuning.md": result.markdown().encode(), "tuning.png": png}


def tune_and_save(index: Any, folder: Path, opts: TuneOptions, timings: Optional[dict] = None, *, report: Optional[Path] = None) -> dict[str, bytes]:
    """Tune the funnel, apply it and save the index into ``folder`` with ``tuning.md``/``tuning.png``
    (and ``build.json``: ``timings`` of the build so far plus the tuning's own seconds) attached to
    its manifest. Returns what was attached. ``report``: the folder named in the printed paths."""
    import time

    from mrl.io import dumps

    if index.catalog.n_deleted:
        raise MRLError(f"the index holds {index.catalog.n_deleted} deleted vectors; run `mrl index compact {report or folder}` before tuning.")
    t0 = time.perf_counter()
    result = opts.run(index, console.print)
    attach = tuning_files(result)
    if timings is not None:
        tune_s = time.perf_counter() - t0
        attach["build.json"] = dumps({**timings, "tune_s": tune_s, "seconds": timings.get("seconds", 0.0) + tune_s}).encode()
    index.save(folder, attach=attach)
    shown = report or folder
    console.print(f"{result.headline()}; frontier: {shown / 'tuning.md'}, {shown / 'tuning.png'}")
    return attach


def build(opts: BuildOptions) -> None:
    """Check the folder and the inputs against ``opts``, then build into a staging folder and install it."""
    from mrl.index.catalog import check_ids
    from mrl.index.store import FORMAT, owned_files, writer_lock
    from mrl.io import check_output

    with writer_lock(opts.folder, create=True):
        check_output(opts.folder, FORMAT, overwrite=opts.overwrite, inputs=opts.inputs, owned=owned_files)
        blocks, n, d = vector_blocks(opts.vectors)
        opts.check_for(d, n)
        id_arr = check_ids(load_ids(str(opts.ids)), n) if opts.ids else None
        records = load_metadata(opts.meta, n)
        _build_staged(opts, blocks, d, id_arr, records)


def _build_staged(opts: BuildOptions, blocks: Any, d: int, id_arr: Optional[np.ndarray], records: Optional[list]) -> None:
    """Build the whole index (store, first stages, tuning) in a hidden sibling folder, then put it in
    place: a rename for a new (or empty) folder, else one save over the previous index. Any failure
    removes the staging folder and leaves ``opts.folder`` untouched."""
    import contextlib
    import os
    import shutil

    from mrl.io.atomic import make_temp_dir

    parent = opts.folder.resolve().parent
    created = next((p for p in reversed([parent, *parent.parents]) if not p.exists()), None)  # the first folder this build makes
    staging = make_temp_dir(parent, f".{opts.folder.name}.building-")
    ok = False
    try:
        index, attach = _build(opts, staging, blocks, d, id_arr, records)
        if not opts.folder.exists() or not any(opts.folder.iterdir()):
            os.replace(staging, opts.folder)  # atomic: the finished index appears at once
        else:  # a previous index (--overwrite): replace its listed files, keep the user's
            index.save(opts.folder, attach=attach)
        ok = True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not ok and created is not None:  # remove the (now empty) parent folders this build made
            for p in [parent, *parent.parents]:
                if p == created.parent:
                    break
                with contextlib.suppress(OSError):
                    p.rmdir()
    console.print(f"wrote {opts.folder}")


def _build(opts: BuildOptions, staging: Path, blocks: Any, d: int, id_arr: Optional[np.ndarray], records: Optional[list]) -> tuple[Any, dict[str, bytes]]:
    import time

    import faiss

    from mrl.index import Funnel, MatryoshkaIndex
    from mrl.io import dumps

    faiss.omp_set_num_threads(opts.threads)
    t0 = time.perf_counter()
    index = MatryoshkaIndex(d, metric=opts.metric, dtype=opts.dtype)
    start = 0
    for block in blocks:  # streamed: shards (or 128k-row slices) of memory-mapped vectors; saved as one segment
        end = start + block.shape[0]
        index.add(block, None if id_arr is None else id_arr[start:end], None if records is None else records[start:end])
        start = end
    index.save(staging)  # the store first: first stages then read the saved, memory-mapped copy
    t1 = time.perf_counter()
    for stage in opts.stages:
        index.build_first_stage(stage)
    if opts.funnel is not None:
        index.funnel = Funnel.parse(opts.funnel)
        index.build_first_stage(index.funnel.first)
    t2 = time.perf_counter()
    timings = {"seconds": t2 - t0, "store_s": t1 - t0, "first_stages_s": t2 - t1, "threads": opts.threads, "rows": index.rows}  # stored with the index, listed in its manifest
    attach = {"build.json": dumps(timings).encode()}
    index.save(staging, attach=attach)
    console.print(f"built {opts.folder}: {index.count} x {index.dim} {opts.dtype} vectors, first stages {[fs.key for fs in index.first_stages()]} "
                  f"(store {t1 - t0:.1f} s, first stages {t2 - t1:.1f} s)")
    if opts.tune is not None:
        t3 = time.perf_counter()
        attach = tune_and_save(index, staging, opts.tune, timings=timings, report=opts.folder)
        console.print(f"tuned in {time.perf_counter() - t3:.1f} s")
    return index, attach
