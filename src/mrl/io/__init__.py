"""Safe file output for every mrl writer: atomic writes, weights with checksums, writer locks and
output ownership (mrl deletes or replaces only files it can prove it wrote).

* :mod:`mrl.io.atomic`: ``atomic_write``/``write_json``/``save_npy``/``write_csv`` (temp + fsync +
  rename, umask respected), ``read_json``/``load_npy`` (no pickle), ``sha256_file``.
* :mod:`mrl.io.weights`: ``save_safetensors``/``load_safetensors`` with a content hash in the
  metadata, verified on load.
* :mod:`mrl.io.lock`: ``writer_lock(path)``, one writer per output (``filelock``).
* :mod:`mrl.io.ownership`: ``open_output(folder, kind, ...)`` and ``open_files(file, kind, ...)``
  (``input_files`` lists the files of input folders):
  lock, refuse foreign files and inputs, write-ahead manifests; :mod:`mrl.io.manifest` reads, writes
  and seals the manifests (``seal``/``check_seal``, ``listed_files``, ``verify_output``) and
  :mod:`mrl.io.proof` decides which files a manifest proves mrl wrote (size and SHA-256).
"""

from mrl.io.atomic import (
    atomic_folder,
    atomic_open,
    atomic_temp_target,
    atomic_write,
    current_umask,
    dumps,
    fsync_dir,
    json_safe,
    load_npy,
    make_temp_dir,
    read_json,
    save_npy,
    sha256_file,
    write_csv,
    write_json,
)
from mrl.io.lock import lock_path, writer_lock
from mrl.io.manifest import MANIFEST, check_seal, file_entry, listed_files, read_manifest, seal, verify_output, write_manifest
from mrl.io.ownership import Output, check_output, input_files, open_files, open_output
from mrl.io.weights import load_safetensors, save_safetensors, tensors_sha256

__all__ = [
    "MANIFEST",
    "Output",
    "atomic_folder",
    "atomic_open",
    "atomic_temp_target",
    "atomic_write",
    "check_output",
    "check_seal",
    "current_umask",
    "dumps",
    "file_entry",
    "fsync_dir",
    "input_files",
    "json_safe",
    "listed_files",
    "load_npy",
    "load_safetensors",
    "lock_path",
    "make_temp_dir",
    "open_files",
    "open_output",
    "read_json",
    "read_manifest",
    "save_npy",
    "save_safetensors",
    "seal",
    "sha256_file",
    "tensors_sha256",
    "verify_output",
    "write_csv",
    "write_json",
    "write_manifest",
    "writer_lock",
]

