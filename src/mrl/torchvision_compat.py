"""Import torchvision, also where its compiled operators cannot load next to the installed torch.

PyPI's x86-64 Linux torchvision wheels are CUDA builds: next to a CPU-only torch of the same release
(the project pins ``torch==2.13.0``, a CPU build, with ``torchvision==0.28.0``) their ``_C.so``
cannot find ``libtorch_cuda.so`` and does not load. torchvision is written to run without that
library (``torchvision.extension._has_ops()`` is then False and the detection operators raise a
clear error when called), except that ``torchvision/_meta_registrations.py`` registers fake kernels
for ``torchvision::nms`` and ``torchvision::qnms`` unconditionally, so ``import torchvision`` fails
with "operator torchvision::nms does not exist". :func:`import_torchvision` declares those two
operator schemas first (only when the compiled library does not load), after which torchvision
imports in its documented no-ops mode. Everything mrl uses from it (``models``, ``datasets``,
``transforms``) is pure Python; images are decoded by Pillow.

Other libraries import torchvision too (transformers does, so ``import sentence_transformers`` fails the
same way). ``import mrl`` therefore installs :class:`TorchvisionImportHook`, a meta-path finder that
runs :func:`declare_missing_ops` the first time anything imports torchvision and then steps aside; it
imports nothing until then. Code that imports transformers or torchvision *before* mrl can call
:func:`import_torchvision` first.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from mrl.errors import MRLError

_SCHEMAS = {"nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor", "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"}
INSTALL_HINT = "install it with `pip install torch==2.13.0 torchvision==0.28.0` (one command, so pip keeps the CPU torch) or `make setup`"


def _compiled_ops_load(package_dir: Path) -> bool:
    """Whether torchvision's ``_C`` extension loads with this torch (it registers ``torchvision::nms``)."""
    import torch

    libs = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    if not libs:
        return False
    try:
        torch.ops.load_library(str(libs[0]))
    except (OSError, RuntimeError):
        return False
    return True


def declare_missing_ops() -> bool:
    """If torchvision is installed but its compiled ops do not load, declare the two operator schemas
    its import needs. Returns whether it declared them."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations or _compiled_ops_load(Path(next(iter(spec.submodule_search_locations)))):
        return False
    import torch

    for name, schema in _SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            torch.library.define(f"torchvision::{name}", schema)  # torch keeps the library alive
    return True


class TorchvisionImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`declare_missing_ops` just before the first ``import torchvision``, whoever imports it."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "torchvision":
            uninstall_import_hook()
            declare_missing_ops()
        return None  # the regular finders load the module


def install_import_hook() -> None:
    """Install :class:`TorchvisionImportHook` once (no-op once torchvision is imported)."""
    if "torchvision" not in sys.modules and not any(isinstance(f, TorchvisionImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, TorchvisionImportHook())


def uninstall_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TorchvisionImportHook)]


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, declaring the two missing operator schemas if needed.

    Raises:
        MRLError: torchvision is not installed, or fails to import for another reason.
    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    if importlib.util.find_spec("torchvision") is None:
        raise MRLError(f"this needs torchvision, which is not installed; {INSTALL_HINT}.")
    uninstall_import_hook()
    declare_missing_ops()
    try:
        import torchvision
    except Exception as exc:  # a torchvision built for another torch release
        raise MRLError(f"torchvision fails to import ({type(exc).__name__}: {exc}); {INSTALL_HINT}.") from exc
    return torchvision


def compiled_ops_available() -> bool:
    """Whether torchvision's compiled operators (``torchvision.ops.nms`` ...) work here."""
    return bool(import_torchvision().extension._has_ops())
