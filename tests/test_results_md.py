import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("results_md", Path(__file__).resolve().parents[1] / "benchmarks" / "results_md.py")
results_md = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_md)


def test_replace_section_touches_only_its_section(tmp_path):
    p = tmp_path / "R.md"
    p.write_text("# R\n\n<!-- section:a -->\nold a\n<!-- /section:a -->\n\n<!-- section:b -->\nold b\n<!-- /section:b -->\n")
    results_md.replace_section("a", "new a", p)
    results_md.replace_section("c", "new c", p)  # a new section is appended
    results_md.replace_section("c", "newer c", p)
    text = p.read_text()
    assert "new a" in text and "old a" not in text and "old b" in text
    assert text.count("<!-- section:c -->") == 1 and "newer c" in text and "new c\n" not in text


def test_empty_section_is_filled(tmp_path):
    p = tmp_path / "R.md"
    p.write_text("<!-- section:a -->\n<!-- /section:a -->\n\n<!-- section:b -->\nkeep\n<!-- /section:b -->\n")
    results_md.replace_section("a", "x", p)
    assert p.read_text() == "<!-- section:a -->\nx\n<!-- /section:a -->\n\n<!-- section:b -->\nkeep\n<!-- /section:b -->\n"


def test_unbalanced_markers_are_refused(tmp_path):
    p = tmp_path / "R.md"
    p.write_text("<!-- section:a -->\nno end\n")
    with pytest.raises(ValueError, match="unbalanced"):
        results_md.replace_section("a", "x", p)
