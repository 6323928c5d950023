from mrl.corpora.textsources import gcide_entries, gcide_paragraphs, html_paragraphs, info_paragraphs, pod_inline, pod_paragraphs

POD = """=pod

=encoding utf8

=head1 NAME

perlfoo - the foo manual

=head1 DESCRIPTION

Use B<bold>, I<italic>, C<< $a <=> $b >> and L<the docs|perldoc/foo> with E<lt>tagsE<gt> and E<0x41>.

    my $verbatim = "code";

=over 4

=item *

A bulleted item with F<file.txt> and S<non breaking>X<index>.

=item B<--flag>

=back

=begin html

<p>raw html is skipped</p>

=end html

=cut

sub code_after_cut { 1 }
"""


def test_pod():
    assert pod_paragraphs(POD) == [
        "perlfoo - the foo manual",
        "Use bold, italic, $a <=> $b and the docs with <tags> and A.",
        "A bulleted item with file.txt and non breaking.",
        "--flag",
    ]
    assert pod_inline("B<C<nested>> L<perlfunc/open> L<Some::Module>") == "nested open Some::Module"


INFO = """This is grep.info, produced by makeinfo.

INFO-DIR-SECTION Text creation and manipulation
START-INFO-DIR-ENTRY
* grep: (grep).                 Print lines matching patterns.
END-INFO-DIR-ENTRY

\x1f
File: grep.info,  Node: Top,  Next: Introduction,  Up: (dir)

grep
****

'grep' prints lines that contain a match for one or more patterns, see
*note Usage:: for more.

* Menu:

* Introduction::                Introduction.

\x1f
Tag Table:
Node: Top\x7f123
"""


def test_info():
    paras = info_paragraphs(INFO)
    assert "'grep' prints lines that contain a match for one or more patterns, see Usage for more." in paras
    assert not any("Menu" in p or p.startswith(("File:", "* ", "grep\n")) or "Tag Table" in p or "Node:" in p for p in paras)


GCIDE = """00-database-short
   The Collaborative International Dictionary of English

Abacus \\Ab"a*cus\\ ([a^]b"[.a]*k[u^]s), n.; E. pl. {Abacuses}; L.
   pl. {Abaci}. [L. abacus, abax]
   1. A table or tray strewn with sand, anciently used for
      drawing, calculating, etc. [Obs.]
      [1913 Webster]

   2. A calculating frame; see {Counter}.
      [1913 Webster]

abacus \\abacus\\ n.
   1. a tablet placed horizontally on top of the capital of a
      column
      [WordNet 1.5]

   Syn: abacus
        [WordNet 1.5]
"""


def test_gcide_senses_without_wordnet_copies():
    entries = dict(gcide_entries(GCIDE))
    assert entries["Abacus"] == ["A table or tray strewn with sand, anciently used for drawing, calculating, etc. [Obs.]", "A calculating frame; see Counter."]
    assert entries["abacus"] == []  # copied from WordNet: left out
    assert [h for h, _ in gcide_paragraphs(GCIDE)] == ["Abacus", "Abacus"]
    assert gcide_paragraphs(GCIDE)[1][1] == "Abacus: A calculating frame; see Counter."
    assert gcide_paragraphs(GCIDE, part=1, parts=2) == []  # the second of two interleaved parts holds entry 1 (abacus)


HTML = """<html><head><title>T</title><script>var x = 1;</script></head><body>
<div class="navheader"><p>Prev Up Next</p></div>
<h1>Heading</h1>
<p>First paragraph with <a href="#">a link</a> and <code>code</code>.</p>
<ul><li>Item one<p>nested paragraph</p></li></ul>
<pre>int main() {}</pre>
<table><tr><td>cell</td></tr></table>
<dl><dt>term</dt><dd>its definition &amp; more</dd></dl>
</body></html>"""


def test_html():
    assert html_paragraphs(HTML) == ["First paragraph with a link and code.", "Item one", "nested paragraph", "term", "its definition & more"]
    broken = '<div class="sidebar"><h5>Version</h4></div><article><p>Body text after a mismatched heading.</p></article>'
    assert html_paragraphs(broken) == ["Body text after a mismatched heading."]
