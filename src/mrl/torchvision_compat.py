"""Import torchvision with a clear install hint when it is missing or built for another torch.

``make setup`` installs ``torch==2.14.1`` and ``torchvision==0.29.1`` in one pip command: a pair
whose compiled operators (``torchvision::nms`` ...) load together, so ``import torchvision`` and
``import sentence_transformers`` (transformers imports torchvision) work in any order, with or
without ``import mrl`` first. A mismatched pair (e.g. PyPI's CUDA torchvision beside a CPU-only
torch) fails at import with "operator torchvision::nms does not exist": :func:`import_torchvision`
turns that into one :class:`MRLError` line that names the fix.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from mrl.errors import MRLError

INSTALL_HINT = "install the matching pair with `pip install torch==2.14.1 torchvision==0.29.1` (one command, so pip keeps them in step) or `make setup`"


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module.

    Raises:
        MRLError: torchvision is not installed, or fails to import (a build for another torch release).
    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    if importlib.util.find_spec("torchvision") is None:
        raise MRLError(f"this needs torchvision, which is not installed; {INSTALL_HINT}.")
    try:
        import torchvision
    except Exception as exc:  # a torchvision built for another torch release
        raise MRLError(f"torchvision fails to import ({type(exc).__name__}: {exc}); {INSTALL_HINT}.") from exc
    return torchvision


def compiled_ops_available() -> bool:
    """Whether torchvision's compiled operators (``torchvision.ops.nms`` ...) work here."""
    return bool(import_torchvision().extension._has_ops())
