"""Output ownership: mrl deletes or replaces only files it can prove it wrote.

Every output mrl writes is described by a **manifest** (JSON, sealed with its own checksum):

* an output *folder* (a training run, an adaptor, a text model, a report, an index) holds
  ``manifest.json``: ``{"format": kind, "files": {name: {"bytes", "sha256"}}, "state", "checksum"}``;
* an output *file* and its siblings (``x.npy`` + ``x.labels.npy`` from ``mrl embed``) are described
  by the JSON sidecar ``x.json``, with the same keys plus the sidecar's own fields.

A ``files`` entry is one of:

* ``name: {"bytes", "sha256"}``: a file, recorded once written;
* ``name: null``: claimed and being written (write-ahead); the process may have died before recording it;
  a recorded file being written again (a checkpoint each epoch) keeps its entry and is named in the
  manifest's ``"rewriting"`` list until it is recorded again;
* ``"dir/": {"files": {rel: {"bytes", "sha256"}}}``: a sub-folder the output owns as a whole
  (:meth:`Output.claim_dir`, e.g. a trainer's ``checkpoints/``, a feature ``cache/``), with the files
  it held when the output was finished (``rel`` relative to the folder; symbolic links are never listed);
* ``"dir/": null`` or ``"dir/": {"kept": [rel, ...]}``: such a folder while it is being written, with
  no listing yet (``kept``: files found in it when this write began that mrl could not prove it wrote).

Proof of ownership, used whenever an output is replaced (``overwrite``, :meth:`Output.remove`,
:meth:`Output.clear_folder`, the swap of a ``staged`` output):

* a listed file with a recorded entry is the output's only while its size and SHA-256 match the entry
  (a ``null`` entry, or a name in ``rewriting``, is the output's by write-ahead). With ``overwrite``, an existing listed file that
  differs stops the command before anything is written or deleted (:class:`ForeignFileError`);
* in a folder with a listing, only the files whose size and SHA-256 match it are deleted; any other
  file stays where it is (sub-folders left empty are removed, the folder itself only when empty);
* a folder without a listing (written by an older mrl, or by a run that stopped before finishing):
  when its manifest was finished (``state`` is not ``"writing"``), only files not newer than the
  manifest are the output's: a file put there after mrl finished stays. When the run never finished,
  everything in it except its ``kept`` files is the output's, as the folder was created by that run
  (a claim never takes over a foreign folder): the files it wrote are then indistinguishable from
  others, and leaving them in place would mix an old run's checkpoints into the next run (a later
  ``--resume`` would pick them up), while refusing would leave a crashed run impossible to overwrite.

Rules, checked under the output's writer lock (:mod:`mrl.io.lock`) before anything is written:

* a new or empty folder is fine; a folder holding a previous output of the same ``kind`` needs
  ``overwrite``; anything else (a folder of a user's files without a manifest, another kind of
  output) is refused, even with ``overwrite``. Files a folder holds that its manifest does not list
  are never deleted or replaced (a folder replaced as a whole, ``staged``, must hold none);
* with ``overwrite`` the old outputs are removed just before the first new file is written, so a
  folder never mixes old and new results (e.g. an old model beside a new checkpoint);
* an input of the running command is never replaced or deleted;
* every file is listed in the manifest *before* it is created (write-ahead: ``out.file(name)``),
  so a crash never leaves a file mrl wrote but cannot prove it wrote; a command that fails before
  its first write leaves the disk untouched.

Hashing costs: files are hashed when the output is finished (only the files of listed folders; a
file's own entry is computed when it is recorded) and when an existing output is replaced (each
listed file once; the removal reuses the check's proof while the file's size, mtime and inode are
unchanged).

Example:
    >>> with open_output("runs/a", "mrl.run", overwrite=True, inputs=[config_path]) as out:
    ...     with out.file("metrics.csv") as p:
    ...         write_csv(p, rows)
    >>> with open_files("emb.npy", "mrl.embeddings", ["emb.labels.npy"], overwrite=False) as out:
    ...     with out.file("emb.npy") as p:
    ...         save_npy(p, x)
    ...     out.meta.update(dim=512)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mrl.errors import DataError, ForeignFileError, MRLError, OutputExistsError
from mrl.io.atomic import fsync_dir, make_temp_dir, unlisted_sibling
from mrl.io.lock import writer_lock
from mrl.io.manifest import (
    MANIFEST,
    file_entry,
    is_file_entry,
    is_folder_entry,
    listed_files,
    read_manifest,
    safe_name,
    write_manifest,
)
from mrl.io.proof import Proof, in_listing, output_files, remove_owned, same_or_inside


def _short(names: Sequence[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_inputs(inputs: Iterable[str | os.PathLike[str] | None], targets: Iterable[Path], folder: Path | None, what: str) -> None:
    """Refuse when an input is one of ``targets`` or lies inside ``folder`` (to be replaced)."""
    targets = [Path(os.path.realpath(t)) for t in targets]
    for inp in inputs:
        if inp is None:
            continue
        real = Path(os.path.realpath(inp))
        if real in targets or (folder is not None and same_or_inside(real, folder)):
            raise OutputExistsError(f"input {inp} is part of the {what} this command would replace; copy it elsewhere first or choose another output.")


# ---------------------------------------------------------------------------- the output object
class Output:
    """Files being written under one manifest. Build with :func:`open_output` or :func:`open_files`.

    Attributes:
        path: where files go (the output folder, the staging folder of a ``staged`` output, or the
            folder of a file group).
        meta: extra fields written into the manifest (e.g. a sidecar's ``model``, ``dim``).
    """

    def __init__(self, root: Path, manifest_path: Path, kind: str, *, old: dict[str, Any] | None, reset: bool, inputs: Sequence[Any], replaceable: Iterable[str] = (), proof: Proof | None = None) -> None:
        self.path = root
        self.kind = kind
        self.meta: dict[str, Any] = {}
        self._manifest_path = manifest_path
        self._old = old
        self._needs_reset = reset and old is not None
        self._inputs = list(inputs)
        self._replaceable = set(replaceable)
        self._files: dict[str, Any] = {} if reset or old is None else dict(old.get("files") or {})
        # what the previous output proves (its manifest's mtime is read now, before anything rewrites it)
        self._proof = proof if proof is not None or old is None else Proof.of(root, old, manifest_path, trusted=self._replaceable)
        self._kept: set[str] = set()  # files (relative to path) the reset left in place: not provably ours
        self._rewriting: set[str] = set() if reset or old is None else {n for n in old.get("rewriting") or [] if n in self._files}
        self._begun = False
        self._touched = False  # nothing is written (not even the manifest) until the first claim

    # -- write-ahead bookkeeping
    def _save(self, state: str) -> None:
        doc = {**self.meta, "format": self.kind, "files": dict(sorted(self._files.items())), "state": state}
        if self._rewriting:
            doc["rewriting"] = sorted(self._rewriting)
        write_manifest(self._manifest_path, doc)

    def _current(self) -> Proof:
        """What this write's own manifest proves (its claims, records and folders)."""
        return Proof(self.path, self._files, {n for n in self._files if safe_name(n)}, trusted=self._replaceable, rewriting=self._rewriting)

    def _begin(self) -> None:
        """Before the first write: remove the previous output's provable files (``overwrite``), or
        (``append``) turn folder listings into "being written" entries, as the run writes there again."""
        if self._begun:
            return
        self._begun = True
        if self._needs_reset and self._proof is not None:  # invalidate the previous output before the first new file exists
            self._needs_reset = False
            keys = sorted(listed_files(self._old) - {self._manifest_path.name})
            self._kept = set(remove_owned(self._proof, keys))  # a crash here leaves them listed: still provably ours
            self._save("writing")
            return
        stale = [k for k, v in self._files.items() if is_folder_entry(k, v) and isinstance(v, dict) and isinstance(v.get("files"), dict)]
        for key in stale:  # files in it that its listing does not prove stay protected as "kept"
            folder, proof = self.path / key, self._proof or self._current()
            present = output_files(folder) if folder.is_dir() and not folder.is_symlink() else []
            kept = sorted(n for n in present if not proof.owns(key + n))
            self._files[key] = {"kept": kept} if kept else None
        if stale:
            self._save("writing")

    def claim(self, name: str) -> Path:
        """List ``name`` in the manifest before it is written; returns its path.

        Raises:
            ForeignFileError: a file of that name exists and the manifest does not list it (checked
                before the previous output is removed), or it is a listed file that was changed
                since mrl wrote it and was therefore left in place.
        """
        if not safe_name(name):
            raise MRLError(f"internal error: output file name {name!r} must be relative.")
        target = self.path / name
        _check_inputs(self._inputs, [target], target if name.endswith("/") else None, "output")
        if name not in self._files and target.exists() and not in_listing(name, listed_files(self._old)) and name not in self._replaceable:
            raise ForeignFileError(f"{target} exists and was not written by mrl; move it away or choose another output.")
        self._touched = True
        self._manifest_path.parent.mkdir(parents=True, exist_ok=True)
        self._begin()
        if name in self._kept:
            raise ForeignFileError(f"{target} is not provably the file mrl wrote (it was changed or added since), so it was left in place; move it away, then rerun.")
        if is_file_entry(self._files.get(name)) and name not in self._rewriting:  # written again: a crash mid-write leaves it ours
            self._rewriting.add(name)
            self._save("writing")
        if name not in self._files:
            kept = sorted(n[len(name) :] for n in self._kept if name.endswith("/") and n.startswith(name))
            self._files[name] = {"kept": kept} if kept else None
            self._save("writing")
        return target

    def record(self, name: str) -> None:
        """Store the size and SHA-256 of the written file ``name``."""
        self._files[name] = file_entry(self.path / name)
        self._rewriting.discard(name)
        self._save("writing")

    def claim_dir(self, name: str) -> Path:
        """List a whole sub-folder (e.g. a trainer's checkpoints) before it is written; returns its path.

        Everything written under it is the output's own; :meth:`finish` records the size and SHA-256
        of each file it then holds, and only those are removed with the output.
        """
        return self.claim(name.rstrip("/") + "/")

    def remove(self, name: str) -> None:
        """Delete a listed file or folder (``name/``) of this output and drop it from the manifest.
        Only provable files are deleted (see the module docstring); any other stays in place, unlisted."""
        key = name if name in self._files else name.rstrip("/") + "/"
        if key not in self._files:
            raise MRLError(f"internal error: {name!r} is not a file of this output.")
        self._touched = True
        self._begin()
        self._kept.update(remove_owned(self._current(), [key]))
        del self._files[key]
        self._rewriting.discard(key)
        self._save("writing")

    def clear_folder(self, name: str) -> None:
        """Empty and remove the sub-folder ``name`` when every file in it is provably ours (written by
        this write, or a file of the previous output that still matches its record); otherwise raise
        and delete nothing.

        Raises:
            ForeignFileError: the folder holds a file neither manifest proves mrl wrote.
        """
        root = self.path / name
        if not root.is_dir() or root.is_symlink():
            return
        names = sorted(str(p.relative_to(self.path)) for p in root.rglob("*") if not p.is_dir() or p.is_symlink())
        current = self._current()
        foreign = [n for n in names if n in self._kept or not (current.owns(n) or (self._proof is not None and self._proof.owns(n)))]
        if foreign:
            raise ForeignFileError(f"{self.path / foreign[0]} was not written by mrl (or was changed since); move it away (it is never deleted), then rerun.")
        for n in names:
            with contextlib.suppress(FileNotFoundError):
                (self.path / n).unlink()
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [root]:
            with contextlib.suppress(OSError):
                d.rmdir()  # folders left empty (only succeeds when empty)
        fsync_dir(self.path)

    @contextlib.contextmanager
    def file(self, name: str) -> Iterator[Path]:
        """``with out.file("model.safetensors") as p: save(p)``: claim, write, record."""
        p = self.claim(name)
        yield p
        self.record(name)

    def finish(self) -> None:
        """Record every claimed file that exists and mark the manifest complete (a no-op when
        nothing was written: a command that wrote nothing leaves the disk as it was)."""
        if not self._touched:
            return
        self._begin()
        for name in list(self._files):
            if name.endswith("/"):
                if not (self.path / name).is_dir() or (self.path / name).is_symlink():
                    del self._files[name]
                else:
                    self._files[name] = {"files": self._listing(name)}
            elif (self.path / name).is_file():
                self._files[name] = file_entry(self.path / name)
            else:
                del self._files[name]
        self._rewriting.clear()  # every file is recorded as it is now
        self._save("complete")

    def _listing(self, key: str) -> dict[str, dict[str, Any]]:
        """``{rel: {"bytes", "sha256"}}`` of the files the claimed folder ``key`` holds now, less the
        files it held that mrl could not prove it wrote (``kept``) and symbolic links."""
        folder, entry = self.path / key, self._files.get(key)
        kept = {*(entry.get("kept") or [] if isinstance(entry, dict) else []), *(n[len(key) :] for n in self._kept if n.startswith(key))}
        return {rel: file_entry(folder / rel) for rel in output_files(folder) if rel not in kept and not (folder / rel).is_symlink()}


def _inspect_folder(p: Path, kind: str) -> dict[str, Any] | None:
    """The manifest of an existing output folder of ``kind`` (``None`` if absent/empty), or raise."""
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p} is a file; the output must be a folder (a new or empty one, or a previous mrl output).")
    if not p.is_dir():
        return None
    present = output_files(p)
    if not present:
        return None
    man = read_manifest(p / MANIFEST) if (p / MANIFEST).is_file() else None
    if man is None:
        raise ForeignFileError(f"{p} holds files mrl did not write ({_short(present)}); choose a new or empty folder, nothing there is replaced.")
    if man.get("format") != kind:
        raise ForeignFileError(f"{p} holds an mrl {man.get('format')!r} output, not {kind!r}; choose another folder (nothing there is replaced).")
    return man


def check_output(path: str | os.PathLike[str], kind: str, *, overwrite: bool = False, append: bool = False, staged: bool = False, inputs: Iterable[Any] = (), owned: Any = None) -> dict[str, Any] | None:
    """Check, without writing anything, that folder ``path`` may receive a ``kind`` output.

    Returns the manifest of the previous output there (``None`` for a new or empty folder). Used
    by :func:`open_output`, and on its own to fail early (before a long computation) or for
    writers that manage their own files (the index). See :func:`open_output` for the rules.
    ``owned(folder, manifest) -> set[str]`` replaces :func:`listed_files` for writers whose
    manifests prove ownership in their own way (an index's pending generation).
    """
    return _check_output(Path(path), kind, overwrite=overwrite, append=append, staged=staged, inputs=inputs, owned=owned)[0]


def _check_output(p: Path, kind: str, *, overwrite: bool, append: bool, staged: bool, inputs: Iterable[Any], owned: Any) -> tuple[dict[str, Any] | None, Proof | None]:
    """:func:`check_output`, also returning what the previous output proves (for the default
    :func:`listed_files` path with ``overwrite``; the files it hashed are not hashed again)."""
    old = _inspect_folder(p, kind)
    if append:
        if old is None:
            raise OutputExistsError(f"{p} holds no {kind!r} output to continue; drop --resume to start a new one.")
        return old, None
    if old is not None and not overwrite:
        raise OutputExistsError(f"{p} already holds an mrl {kind!r} output; pass --overwrite (overwrite=True) to replace it, or choose another output.")
    if old is None:
        return None, None
    proof = None if owned is not None else Proof.of(p, old, p / MANIFEST, trusted=[MANIFEST])
    mine = owned(p, old) if owned is not None else proof.names
    if staged:  # the folder is replaced as a whole: it may hold nothing but what mrl listed
        _check_inputs(inputs, [], p, f"folder {p}")
    else:  # listed files are removed, others stay: no input may be a listed one
        _check_inputs(inputs, [p / n for n in mine if not n.endswith("/")], None, f"folder {p}")
        for d in (n for n in mine if n.endswith("/")):
            _check_inputs(inputs, [], p / d, f"folder {p}")
    if proof is not None:  # a listed file whose content is no longer what mrl wrote is the user's now
        changed = proof.changed()
        if changed:
            raise ForeignFileError(f"{p / changed[0]} was changed since mrl wrote it (its size or SHA-256 differs from {p / MANIFEST}; changed: {_short(changed)}); move it away, then rerun; nothing was deleted.")
    if staged:
        unlisted = [f for f in output_files(p) if f != MANIFEST and not (proof.owns(f) if proof is not None else in_listing(f, mine))]
        if unlisted:
            raise ForeignFileError(f"{p} holds files mrl did not write ({_short(unlisted)}); move them out before --overwrite, nothing there is deleted.")
    return old, proof


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], kind: str, *, overwrite: bool = False, append: bool = False, staged: bool = False, inputs: Iterable[Any] = ()) -> Iterator[Output]:
    """Lock and check an output folder, then yield an :class:`Output` to write into it.

    Args:
        path: the output folder.
        kind: what the folder holds, e.g. ``"mrl.run"``; recorded as the manifest's ``format``.
        overwrite: allow replacing a previous output of the same ``kind``. Its files are removed
            just before the first new file is written, each only when provably mrl's (listed, and
            still of its recorded size and SHA-256; see the module docstring); never other files.
        append: continue a previous output of ``kind`` (e.g. resume training): nothing is removed.
        staged: write everything into a hidden sibling folder and swap it in as a whole when the
            block ends (a reader sees the old folder or the new one); the folder must then hold
            only files mrl listed.
        inputs: paths the command reads; refused if the output would replace or delete them.

    Raises:
        OutputExistsError: the folder holds a previous output and ``overwrite`` is False, or an
            input would be replaced.
        ForeignFileError: the folder holds files mrl did not write (or another kind of output),
            or, with ``overwrite``, a listed file was changed since mrl wrote it.
        OutputLockedError: another process is writing the folder.
    """
    p = Path(path)
    inputs = [i for i in inputs if i is not None]
    with writer_lock(p):
        old, proof = _check_output(p, kind, overwrite=overwrite, append=append, staged=staged, inputs=inputs, owned=None)
        if not staged:
            out = Output(p, p / MANIFEST, kind, old=old, reset=not append, inputs=inputs, proof=proof)
            yield out
            out.finish()
            return
        tmp = make_temp_dir(p.parent, f".{p.name}.")
        try:
            out = Output(tmp, tmp / MANIFEST, kind, old=None, reset=True, inputs=inputs)
            yield out
            folders = {k for k in out._files if k.endswith("/")}  # their files are listed by finish()
            out._files.update({f: None for f in output_files(tmp) if f != MANIFEST and not in_listing(f, folders)})
            out._touched = True
            out.finish()
            _swap_in(tmp, p, proof)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_in(tmp: Path, target: Path, proof: Proof | None) -> None:
    """Replace ``target`` by ``tmp`` in one rename; then delete only the files of the old folder that
    ``proof`` (what its manifest proves) shows are the old output's; any other file (one put there
    after the checks, or a listed file changed since mrl wrote it) is kept in an unlisted sibling."""
    aside = None
    if target.exists():
        aside = make_temp_dir(target.parent, f".{target.name}.old-")
        os.replace(target, aside / "x")
        aside_folder = aside / "x"
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if aside is not None:
        proof = (proof or Proof(target, {}, set(), trusted=[MANIFEST])).moved(aside_folder)
        remove_owned(proof, sorted(proof.names | {MANIFEST}))
        leftovers = output_files(aside_folder)
        if leftovers:  # files appeared that mrl did not write: keep them where the user can see them
            os.replace(aside_folder, unlisted_sibling(target))
        shutil.rmtree(aside, ignore_errors=True)


def input_files(*paths: str | os.PathLike[str] | None) -> list[Path]:
    """The given paths plus every file under those that are folders: the ``inputs`` of a command
    that reads whole folders (a model, a data set), so that no file in them can be an output."""
    found: list[Path] = []
    for p in paths:
        if p is None:
            continue
        found.append(Path(p))
        if Path(p).is_dir():
            found += [Path(root) / f for root, _, files in os.walk(p) for f in files]
    return found


@contextlib.contextmanager
def open_files(primary: str | os.PathLike[str], kind: str, siblings: Sequence[str | os.PathLike[str]] = (), *, overwrite: bool = False, inputs: Iterable[Any] = (), sidecar: bool = True, owned: Callable[[Path], bool] | None = None) -> Iterator[Output]:
    """Lock and check a file output (``x.npy``) with its ``siblings``; its JSON sidecar ``x.json``
    is the manifest. Yields an :class:`Output` whose ``path`` is the file's folder.

    With ``overwrite``, the primary file may be replaced; a sibling or sidecar only if the existing
    sidecar (of the same ``kind``) lists it. Inputs of the command are never replaced.
    ``sidecar=False`` (a single self-describing file such as a results JSON, no siblings): only
    the lock, the overwrite and the input checks, and, when ``owned(path)`` is given, an existing
    file is replaced only if ``owned`` recognises it as a previous output of ``kind`` (the file is
    its own manifest). List the files of input folders in ``inputs`` (:func:`input_files`).

    Raises:
        OutputExistsError: a file exists and ``overwrite`` is False, or an input would be replaced.
        ForeignFileError: an existing sibling or sidecar was not written by mrl, or ``owned``
            does not recognise the existing file.
    """
    prim = Path(primary)
    if prim.exists() and prim.is_dir():
        raise OutputExistsError(f"{prim} is a folder; give a file name for the output.")
    if not sidecar:
        if siblings:
            raise MRLError("internal error: an output with siblings needs a sidecar to list them.")
        with writer_lock(prim):
            _check_inputs([i for i in inputs if i is not None], [prim], None, f"output {prim}")
            if prim.exists() and not overwrite:
                raise OutputExistsError(f"{prim} already exists; pass --overwrite to replace it, or choose another output.")
            if prim.exists() and owned is not None and not owned(prim):
                raise ForeignFileError(f"{prim} exists and is not an mrl {kind!r} output; move it away or choose another --out (nothing is replaced).")
            yield Output(prim.parent, prim, kind, old=None, reset=False, inputs=[], replaceable=[prim.name])
        return
    side_path = prim.with_suffix(".json")
    if prim.suffix == ".json":
        raise MRLError(f"{prim}: the output must not be a .json file (that name is its sidecar).")
    names = [prim.name, *(Path(s).name for s in siblings)]
    inputs = [i for i in inputs if i is not None]
    with writer_lock(prim):
        _check_inputs(inputs, [prim.parent / n for n in names] + [side_path], None, f"output {prim}")
        old: dict[str, Any] | None = None
        if side_path.exists():
            try:
                old = read_manifest(side_path)
            except DataError:
                old = None
            if old is None or old.get("format") != kind:
                raise ForeignFileError(f"{side_path} exists and is not an mrl {kind!r} sidecar; move it away or choose another --out (nothing is replaced).")
        existing = [n for n in [*names, side_path.name] if (prim.parent / n).exists()]
        if existing and not overwrite:
            raise OutputExistsError(f"{prim.parent / existing[0]} already exists; pass --overwrite to replace {_short(existing)}, or choose another output.")
        mine = listed_files(old)
        foreign = [n for n in existing if n not in mine and n not in (prim.name, side_path.name)]
        if foreign:
            raise ForeignFileError(f"{prim.parent / foreign[0]} exists and was not written by mrl with {prim.name}; move it away or choose another --out (nothing is replaced).")
        _check_inputs(inputs, [prim.parent / n for n in mine], None, f"output {prim}")
        proof = Proof.of(prim.parent, old, side_path, trusted=[prim.name]) if old is not None else None
        changed = proof.changed() if proof is not None else []  # the primary file is replaced whatever it holds: the user named it
        if changed:
            raise ForeignFileError(f"{prim.parent / changed[0]} was changed since mrl wrote it with {prim.name} (its size or SHA-256 differs from {side_path}); move it away, then rerun; nothing was deleted.")
        out = Output(prim.parent, side_path, kind, old=old, reset=True, inputs=inputs, replaceable=[prim.name], proof=proof)
        yield out
        out.finish()
