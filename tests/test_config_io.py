from dataclasses import dataclass

import pytest

from mrl.config_io import from_mapping, read_config
from mrl.errors import MRLError


@dataclass
class Recipe:
    epochs: int = 1
    dims: list[int] | None = None


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("epochs: 3\ndims: [8, 16]\n")
    data = read_config(p, ["epochs=5", "dims=[4]"])
    assert from_mapping(Recipe, data) == Recipe(epochs=5, dims=[4])
    assert read_config(None, {"epochs": 2}) == {"epochs": 2}
    assert read_config(None, ["dims="]) == {"dims": None}


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(MRLError, match="see configs/ for examples"):
        read_config(tmp_path / "missing.yaml", None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(MRLError, match="mapping"):
        read_config(bad, None)
    with pytest.raises(MRLError, match="key=value"):
        read_config(None, ["epochs"])
    with pytest.raises(MRLError, match="unknown recipe keys"):
        from_mapping(Recipe, {"epoch": 1}, "recipe")


@dataclass
class Typed:
    lr: float = 0.1
    flag: bool = False
    name: str = ""
    weights: list[float] | None = None
    extra: dict | None = None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"lr": True}, "lr must be a number, got True"),
        ({"lr": float("inf")}, "lr must be a finite number"),
        ({"flag": 1}, "flag must be true or false, got 1"),
        ({"flag": "yes"}, "flag must be true or false"),
        ({"name": False}, "name must be a string"),
        ({"weights": [1, "x"]}, r"weights\[1\] must be a number, got 'x'"),
        ({"weights": "1,2"}, r"weights must be a list, got '1,2'; write e.g. weights=\[1, 2\]"),
        ({"extra": 3}, "extra must be a mapping"),
    ],
)
def test_pydantic_coercion_keeps_the_field_path_and_refuses_lax_bools(data, message):
    with pytest.raises(MRLError, match=message):
        from_mapping(Typed, data)


def test_pydantic_coercion_converts_yaml_strings():
    got = from_mapping(Typed, read_config(None, ["lr=1e-3", "name=3", "weights=[1, 2.5]", "flag=true"]))
    assert got == Typed(lr=1e-3, flag=True, name="3", weights=[1.0, 2.5]) and isinstance(got.weights[0], float)
