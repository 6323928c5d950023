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
