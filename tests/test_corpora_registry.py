"""The one registry of buildable offline sets, and the one-way import rule data <- corpora."""

import ast
from pathlib import Path

import pytest
from mm_fixtures import write_shape_pairs

import mrl
from mrl.corpora.registry import SETS, build_set, register_set, set_names
from mrl.data.image_text import load_image_text
from mrl.errors import MRLError

SRC = Path(mrl.__file__).parent


def test_the_registry_is_the_list_of_buildable_sets():
    assert set_names() == ["manpages", "pydocs", "text-corpus", "wordnet-corpus", "image-text"]
    assert set_names("ood") == ["manpages", "pydocs"]
    assert all(spec.description for spec in SETS.values())
    with pytest.raises(MRLError, match="'nope' is not a set mrl builds; choose one of manpages, pydocs"):
        build_set("nope", "unused")
    with pytest.raises(ValueError, match="registered twice"):
        register_set("pydocs", kind="ood", description="x")(lambda out, log: {})


def test_build_set_image_text_from_a_user_pair_file(tmp_path):
    pairs = write_shape_pairs(tmp_path / "pairs")
    lines: list[str] = []
    manifest = build_set("image-text", tmp_path / "set", log=lines.append, emoji=False, themes=(), pairs=[str(pairs)], size=16)
    data = load_image_text(tmp_path / "set")
    assert manifest["pictures"] == len(data.items) > 0 and data.image_size == 16
    assert any("pairs" in line for line in lines)
    with pytest.raises(MRLError, match="no source selected"):
        build_set("image-text", tmp_path / "empty", emoji=False, themes=())
    assert not (tmp_path / "empty").exists()


def test_data_never_imports_corpora():
    """``data/`` is loading only: a loader that needs a builder's piece gets it moved down into data."""
    for path in sorted((SRC / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("mrl.corpora") for n in names), f"{path.name} imports {names}"
