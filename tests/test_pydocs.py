from pathlib import Path

import pytest

from mrl.corpora.pydocs import list_rst_files, load_python_docs, parse_rst_file, pydoc_ood_items
from mrl.corpora.rst import clean_inline, rst_paragraphs
from mrl.errors import DataError

LIB = """:mod:`widgets` --- Widget helpers
=================================

.. module:: widgets
   :synopsis: Widgets.

**Source code:** :source:`Lib/widgets.py`

This module builds *widgets* from :class:`~widgets.Part` objects, see `the guide <https://example.org>`_.

.. function:: build(parts, *, strict=False, \\
                    colour=None)
              build(parts, colour)

   Build a widget from *parts* and return it.  Raise :exc:`ValueError` when
   ``strict`` is true and a part is missing.

   Example::

      >>> build([1, 2])
      Widget(2)

   .. versionchanged:: 3.9 Accepts any iterable of
      parts, not only lists.

   +-------+-------+
   | a     | b     |
   +-------+-------+

.. class:: Part(name)

   A part of a widget, identified by its name and kept in a registry.

   .. method:: weight()

      Return the weight of the part in grams, as measured when it was made.

   .. attribute:: name

      The name given to the constructor of this part.

   Parts compare equal when their names are equal (a class-level remark).

.. c:function:: PyObject* Widget_New(Py_ssize_t size)

   Return a new widget object of the given size, or NULL with an exception set.

.. code-block:: python

   print("not prose")

Closing remarks of the module, outside any entry, long enough to count.
"""


def test_entries_are_qualified_and_described():
    entries, outside = parse_rst_file(LIB, "library/widgets.rst.txt")
    by_id = {e.id: e for e in entries}
    assert list(by_id) == ["widgets.build", "widgets.Part", "widgets.Part.weight", "widgets.Part.name", "Widget_New"]
    build = by_id["widgets.build"]
    assert build.signature == "widgets.build(parts, *, strict=False, colour=None)"
    assert build.paragraphs == (
        "Build a widget from parts and return it. Raise ValueError when strict is true and a part is missing.",
        "Example:",
        "Accepts any iterable of parts, not only lists.",
    )
    part = by_id["widgets.Part"]
    assert part.paragraphs == ("A part of a widget, identified by its name and kept in a registry.", "Parts compare equal when their names are equal (a class-level remark).")
    assert by_id["widgets.Part.weight"].signature == "widgets.Part.weight()"
    assert by_id["Widget_New"].signature == "PyObject* Widget_New(Py_ssize_t size)"
    assert outside == [
        "Source code: Lib/widgets.py",
        "This module builds widgets from Part objects, see the guide.",
        "Closing remarks of the module, outside any entry, long enough to count.",
    ]


def test_rst_paragraphs_drop_code_tables_titles_and_comments():
    text = "Title\n=====\n\n.. comment\n   hidden text\n\n* first item\n* second item\n  continues\n\n>>> code()\n\n=====  =====\na      b\n=====  =====\n\nPlain ``literal`` and :pep:`8` and :func:`!nolink` and [#]_ note.\n"
    assert rst_paragraphs(text) == ["first item", "second item continues", "Plain literal and PEP 8 and nolink and note."]
    assert clean_inline(":ref:`the text <label>` and `link`_ and |version| and foo_ and __init__") == "the text and link and version and foo and __init__"


def test_load_folder_and_ood_items(tmp_path):
    root = tmp_path / "_sources"
    (root / "library").mkdir(parents=True)
    (root / "library" / "widgets.rst.txt").write_text(LIB)
    (root / "library" / "again.rst.txt").write_text(".. module:: widgets\n\n.. function:: build(x)\n\n   A second description of the same function, ignored.\n")
    docs = load_python_docs(root)
    assert [e.id for e in docs.entries].count("widgets.build") == 1
    assert docs.entries[0].file == "library/again.rst.txt"  # sorted file order: the first one wins
    items, extra = pydoc_ood_items(docs, min_words=5)
    by_id = {it.id: it for it in items}
    assert by_id["widgets.Part.weight"].query == "widgets.Part.weight()" and by_id["widgets.Part.weight"].group == "py:widgets.Part.weight"
    assert by_id["widgets.Part.weight"].text == "Return the weight of the part in grams, as measured when it was made."
    assert all(e.kind == "prose" for e in extra) and "Closing remarks" in extra[-1].text
    with pytest.raises(DataError, match="python3.11-doc"):
        list_rst_files(tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no .rst.txt"):
        list_rst_files(empty)


def test_real_python_docs_when_installed():
    root = Path("/usr/share/doc/python3.11/html/_sources/library/os.path.rst.txt")
    if not root.is_file():
        pytest.skip("python3.11-doc not installed")
    entries, _ = parse_rst_file(root.read_text(), "library/os.path.rst.txt")
    join = next(e for e in entries if e.id == "os.path.join")
    assert join.signature == "os.path.join(path, *paths)" and join.description().startswith("Join one or more path")
