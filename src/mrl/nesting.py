"""Matryoshka nesting dims: generate, parse and validate ``matryoshka_dims``.

A nesting list is a strictly increasing sequence of positive prefix sizes whose last entry is the
embedding width ``D``, e.g. ``(8, 16, 32, ..., 512)``. Every function here returns a ``tuple[int, ...]``.

Example:
    >>> log2_dims(8, 64)
    (8, 16, 32, 64)
    >>> parse_dims("2,4,...,32")
    (2, 4, 8, 16, 32)
    >>> parse_dims("16,48,96", embed_dim=96)
    (16, 48, 96)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mrl.errors import MRLError


def validate_dims(dims: Iterable[int], embed_dim: int | None = None, *, require_full: bool = True) -> tuple[int, ...]:
    """Validate a nesting list and return it as a tuple.

    Args:
        dims: prefix sizes, e.g. ``[8, 16, 32]``.
        embed_dim: the embedding width ``D``. When given, every dim must be ``<= D`` and, if
            ``require_full``, the last dim must equal ``D`` (so the full vector is trained too).
        require_full: whether the last dim must be ``embed_dim``.

    Raises:
        MRLError: empty, non-integer, non-positive, unsorted, duplicated or oversized dims.
    """
    try:
        out = tuple(dims)
    except TypeError as exc:
        raise MRLError(f"matryoshka_dims must be a list of integers, got {dims!r}.") from exc
    if not out:
        raise MRLError("matryoshka_dims is empty; pass at least one prefix size, e.g. [8, 16, 32].")
    for d in out:
        if isinstance(d, bool) or not isinstance(d, int):
            raise MRLError(f"matryoshka_dims must hold integers, got {d!r} ({type(d).__name__}).")
        if d <= 0:
            raise MRLError(f"matryoshka_dims must be positive, got {d}.")
    for a, b in zip(out, out[1:]):
        if b <= a:
            what = "duplicated" if a == b else "not increasing"
            raise MRLError(f"matryoshka_dims must be strictly increasing, but {a} is followed by {b} ({what}); sort them and drop duplicates: {sorted(set(out))}.")
    if embed_dim is not None:
        if out[-1] > embed_dim:
            raise MRLError(f"matryoshka_dims go up to {out[-1]}, larger than the embedding dim {embed_dim}; drop dims above {embed_dim}.")
        if require_full and out[-1] != embed_dim:
            raise MRLError(f"the last of matryoshka_dims is {out[-1]} but the embedding dim is {embed_dim}; end the list with {embed_dim}.")
    return out


def log2_dims(start: int, embed_dim: int) -> tuple[int, ...]:
    """Doubling prefix sizes from ``start`` up to and including ``embed_dim``.

    ``embed_dim`` is appended when it is not a power-of-two multiple of ``start``:
    ``log2_dims(8, 384) == (8, 16, 32, 64, 128, 256, 384)``.
    """
    if isinstance(start, bool) or not isinstance(start, int) or start <= 0:
        raise MRLError(f"start must be a positive integer, got {start!r}.")
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < start:
        raise MRLError(f"embed_dim must be an integer >= start ({start}), got {embed_dim!r}.")
    dims = []
    d = start
    while d < embed_dim:
        dims.append(d)
        d *= 2
    dims.append(embed_dim)
    return tuple(dims)


def parse_dims(spec: str | Sequence[int], embed_dim: int | None = None) -> tuple[int, ...]:
    """Parse ``"8,16,32"``, ``"8,16,...,512"`` (geometric continuation) or a list of ints.

    In ``"a,b,...,z"`` the sequence continues with ratio ``b/a`` until ``z``; ``z`` is included
    even if the ratio does not land on it exactly. The result is validated with
    :func:`validate_dims` against ``embed_dim`` when given.
    """
    if not isinstance(spec, str):
        return validate_dims(spec, embed_dim)
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise MRLError(f"cannot parse matryoshka_dims from {spec!r}; write e.g. '8,16,32' or '8,16,...,512'.")
    if "..." in parts:
        i = parts.index("...")
        if i < 2 or i != len(parts) - 2:
            raise MRLError(f"in {spec!r} '...' must follow two dims and precede the last one, e.g. '8,16,...,512'.")
        head, last = _ints(parts[:i], spec), _ints([parts[-1]], spec)[0]
        validate_dims(head, require_full=False)
        ratio = head[-1] / head[-2]
        dims = list(head)
        nxt = round(dims[-1] * ratio)
        while nxt < last:
            dims.append(nxt)
            nxt = round(dims[-1] * ratio)
        dims.append(last)
        return validate_dims(dims, embed_dim)
    return validate_dims(_ints(parts, spec), embed_dim)


def _ints(parts: list[str], spec: str) -> list[int]:
    try:
        return [int(p) for p in parts]
    except ValueError as exc:
        raise MRLError(f"cannot parse matryoshka_dims from {spec!r}: {exc}; write e.g. '8,16,32'.") from exc
