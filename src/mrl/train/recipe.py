"""One road for training recipes: read a YAML once, dispatch on ``task``, share the Matryoshka fields.

Every recipe dataclass derives from :class:`MatryoshkaRecipe`, which holds the fields all tasks
share (the nesting, its loss weighting, seed and runtime) and validates them in one place. A task
registers its recipe class with :func:`register_task`; :func:`load_recipe` reads the YAML (plus
``key=value`` overrides), looks at ``task`` (default ``image``) and builds that class, coercing each
value to its field's type.

Example:
    >>> cfg = load_recipe("configs/wordnet_minilm.yaml", ["max_steps=10"])
    >>> type(cfg).__name__, cfg.task
    ('TextTrainConfig', 'text')
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mrl.config_io import coerce, from_mapping, read_config
from mrl.errors import MRLError
from mrl.nesting import parse_dims, validate_dims
from mrl.weighting import Weighting, weighting_from_config

R = TypeVar("R", bound="MatryoshkaRecipe")

# task name -> recipe class; filled by @register_task in the modules of TASK_MODULES.
TASKS: dict[str, type[MatryoshkaRecipe]] = {}
# Modules whose import registers a task (imported lazily so that reading a recipe stays cheap).
TASK_MODULES = ("mrl.train.config", "mrl.train.text_config", "mrl.train.multimodal_config")


def register_task(name: str):
    """Class decorator: make ``task: name`` in a recipe build this dataclass."""

    def wrap(cls: type[R]) -> type[R]:
        TASKS[name] = cls
        return cls

    return wrap


@dataclass
class MatryoshkaRecipe:
    """Fields every training task shares. Subclasses add their own and may change defaults."""

    task: str = "image"  # which trainer runs the recipe: image | text | multimodal (see TASKS)
    matryoshka_dims: Any = None  # nested prefix sizes, e.g. "8,16,...,512" or [8, 16, 512]; the last is the embedding width
    matryoshka_weights: list[float] | None = None  # fixed per-prefix loss weights (implies weighting: fixed)
    weighting: str = "uniform"  # how per-prefix losses combine: a name from mrl.weighting (uniform, fixed, uncertainty, dwa, focal)
    weighting_kwargs: dict[str, Any] = field(default_factory=dict)  # options of the weighting strategy, e.g. {gamma: 1.0}
    n_dims_per_step: int | None = None  # if set, only this many randomly chosen prefixes contribute each step
    seed: int = 0  # seeds initialisation, data order and sampling
    device: str = "auto"  # auto (cuda if available, else cpu), cpu or cuda
    threads: int | None = None  # torch CPU threads (null: torch's default)
    progress: bool = True  # show progress bars (throttled when stderr is not a terminal)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce(hints.get(f.name, Any), getattr(self, f.name), f.name))
        self.validate()

    def validate(self) -> None:
        """Check the shared fields; subclasses call ``super().validate()`` then check their own."""
        if self.task not in TASKS or not isinstance(self, TASKS[self.task]):
            raise MRLError(f"task {self.task!r} does not match this recipe ({type(self).__name__}); valid tasks are {sorted(TASKS)}.")
        if self.matryoshka_dims is None:
            raise MRLError("matryoshka_dims is missing; give the nested prefix sizes, e.g. matryoshka_dims: 8,16,...,512.")
        dims = parse_dims(self.matryoshka_dims) if isinstance(self.matryoshka_dims, str) else validate_dims(self.matryoshka_dims)
        self.matryoshka_dims = list(dims)
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise MRLError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}.")
        if self.threads is not None and self.threads <= 0:
            raise MRLError(f"threads must be a positive integer or null (torch's default), got {self.threads}.")
        if self.seed < 0:
            raise MRLError(f"seed must be a non-negative integer, got {self.seed}.")
        if self.n_dims_per_step is not None and not 1 <= self.n_dims_per_step <= len(self.matryoshka_dims):
            raise MRLError(f"n_dims_per_step must be in [1, {len(self.matryoshka_dims)}] (the number of matryoshka_dims) or null, got {self.n_dims_per_step}.")
        self.build_weighting()  # fail at load time on an unknown strategy or bad weights

    def build_weighting(self) -> Weighting:
        """The loss weighting this recipe asks for (``matryoshka_weights`` implies ``fixed``)."""
        return weighting_from_config(len(self.matryoshka_dims), self.weighting, self.weighting_kwargs, self.matryoshka_weights)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Build from a mapping (unknown keys refused, values coerced to the field types)."""
        return from_mapping(cls, {"task": _task_of(cls), **data}, f"{_task_of(cls)} recipe")

    def replace(self: R, **changes: Any) -> R:
        return type(self).from_dict({**self.to_dict(), **changes})


def _task_of(cls: type[MatryoshkaRecipe]) -> str:
    return next((name for name, c in TASKS.items() if c is cls), "image")


def _register_all() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)


def load_recipe(path: str | os.PathLike[str] | None = None, overrides: list[str] | dict[str, Any] | None = None, *, default_task: str = "image") -> MatryoshkaRecipe:
    """Read a YAML recipe (or the defaults) once, apply overrides, and build the ``task``'s class
    (``default_task`` when the recipe names none)."""
    _register_all()
    data = read_config(path, overrides)
    task = data.get("task", default_task)
    if task not in TASKS:
        raise MRLError(f"unknown task {task!r}; valid tasks are {sorted(TASKS)} (see configs/ for a recipe of each).")
    return TASKS[task].from_dict(data)
