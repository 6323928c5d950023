import gzip
import os
import shutil
from pathlib import Path

import pytest

from mrl.corpora.manpages import canonical_page, is_so_stub, list_man_pages, load_man_pages, man_ood_items, page_kind, parse_man_html
from mrl.errors import DataError

pytestmark = pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc not installed (make data installs it)")

MAN = r""".\" a comment
.TH DEMO 1 "2024" "demo 1.0" "User Commands"
.SH NAME
demo, demo2 \- list the demo directory contents
.SH SYNOPSIS
.B demo
[\fIOPTION\fR]... [\fIFILE\fR]...
.SH DESCRIPTION
.PP
List information about the \fBFILEs\fR (the current directory by default).
Sort entries alphabetically if none of \fB\-cftuvSUX\fR is specified.
.PP
Example:
.nf
  demo \-l /tmp | sort
.fi
.TP
\fB\-a\fR, \fB\-\-all\fR
do not ignore entries starting with a dot
.SH OPTIONS
.IP \(bu 2
The options section has its own prose paragraph with enough words.
"""

MDOC = """.Dd January 1, 2024
.Dt MDOCDEMO 1
.Os
.Sh NAME
.Nm mdocdemo
.Nd print a friendly greeting to the terminal
.Sh DESCRIPTION
The
.Nm
utility prints a friendly greeting to whoever runs it. It is written in mdoc.
.Bd -literal
mdocdemo --loud
.Ed
"""


def gcloud(track: str) -> str:
    mark = f"({track.upper()}) " if track else ""
    return f""".TH "GCLOUD" 1
.SH "NAME"
.HP
gcloud {track + ' ' if track else ''}widgets list \\- list the widgets of the current project
.SH "DESCRIPTION"
{mark}Lists every widget of the current project, with its name, zone and state, sorted by creation time.
"""


def make_root(tmp: Path) -> Path:
    root = tmp / "man"
    (root / "man1").mkdir(parents=True)
    (root / "man3").mkdir()
    (root / "man1" / "demo.1").write_text(MAN)
    with gzip.open(root / "man1" / "mdocdemo.1.gz", "wt") as fh:
        fh.write(MDOC)
    (root / "man1" / "demo2.1").write_text('.\\" include\n.so man1/demo.1\n')  # a .so stub
    os.symlink("demo.1", root / "man1" / "demo3.1")  # a symlink to the same page
    (root / "man1" / "gcloud_widgets_list.1").write_text(gcloud(""))
    (root / "man1" / "gcloud_alpha_widgets_list.1").write_text(gcloud("alpha"))
    (root / "man1" / "gcloud_beta_gadgets_list.1").write_text(gcloud("beta").replace("widget", "gadget"))
    (root / "man3" / "empty.3").write_text('.TH EMPTY 3\n.SH NAME\nempty \\- a page without description\n')
    (root / "de").mkdir()  # translations are not read
    return root


def test_list_folds_symlinks_and_so_stubs(tmp_path):
    root = make_root(tmp_path)
    names = [p.name for p in list_man_pages(root)]
    assert names == ["demo.1", "gcloud_alpha_widgets_list.1", "gcloud_beta_gadgets_list.1", "gcloud_widgets_list.1", "mdocdemo.1.gz", "empty.3"]
    assert is_so_stub(root / "man1" / "demo2.1") and not is_so_stub(root / "man1" / "demo.1")
    with pytest.raises(DataError, match="not a folder of man pages"):
        list_man_pages(tmp_path / "missing")


def test_parse_man_and_mdoc_pages(tmp_path):
    root = make_root(tmp_path)
    pages = {p.page: p for p in load_man_pages(root)}
    demo = pages["demo.1"]
    assert demo.names == "demo, demo2" and demo.summary == "list the demo directory contents"
    assert [h for h, _ in demo.sections] == ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"]
    desc = demo.description()
    assert desc.startswith("List information about the FILEs (the current directory by default).")
    assert "-a, --all: do not ignore entries starting with a dot" in desc
    assert "sort" not in desc.split("Example:")[1]  # the literal block is not prose
    assert demo.paragraphs("OPTIONS") == ["The options section has its own prose paragraph with enough words."]
    assert "demo2" not in " ".join(demo.paragraphs())  # NAME and SYNOPSIS are not prose
    md = pages["mdocdemo.1"]
    assert md.summary == "print a friendly greeting to the terminal" and md.names == "mdocdemo"
    assert md.description() == "The mdocdemo utility prints a friendly greeting to whoever runs it. It is written in mdoc."
    assert pages["empty.3"].description() == "" and page_kind(pages["empty.3"]) == "man3"


def test_ood_items_keep_one_track_per_command(tmp_path):
    root = make_root(tmp_path)
    items, extra = man_ood_items(load_man_pages(root))
    by_id = {it.id: it for it in items}
    assert canonical_page("gcloud_alpha_widgets_list.1") == "gcloud_widgets_list.1"
    assert "gcloud_alpha_widgets_list.1" not in by_id and "gcloud_widgets_list.1" in by_id  # GA wins
    beta = by_id["gcloud_beta_gadgets_list.1"]  # only in beta: kept, without the track mark
    assert beta.text.startswith("Lists every gadget") and beta.kind == "gcloud"
    assert by_id["demo.1"].query == "list the demo directory contents" and by_id["demo.1"].group == "man:demo.1"
    assert "empty.3" not in by_id  # no description
    assert [e.id for e in extra] == ["demo.1#OPTIONS"]


def test_parse_html_without_name_line():
    page = parse_man_html('<section class="Sh"><h1 class="Sh">DESCRIPTION</h1><p>Only text here.</p></section>', "x.1")
    assert page.summary == "" and page.paragraphs("DESCRIPTION") == ["Only text here."]
