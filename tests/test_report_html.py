"""Tables in the Snakemake report (issue 16): the report shows HTML inline and offers markdown
only as a download, so every table writer also writes an HTML page of the same content."""
from negfree.report.html import markdown_to_html, write_markdown_page

MD = """# dft/table2 (demo scale: SmolLM2-135M, 8 prompts)

Values are **means**; see [targets](targets.md) and `evals.csv`.

| method | ARC | GSM8K \\| strict |
|:--|--:|--:|
| sft | 0.25 | 0.031 |
| dft | 0.5 | <b>0.1</b> |

- one
- two
"""


def test_markdown_table_becomes_an_html_table():
    page = markdown_to_html(MD, title="t")
    assert page.startswith("<!DOCTYPE html>")
    assert "<h1>dft/table2 (demo scale: SmolLM2-135M, 8 prompts)</h1>" in page
    assert "<th>method</th><th>ARC</th><th>GSM8K | strict</th>" in page
    assert "<tr><td>sft</td><td>0.25</td><td>0.031</td></tr>" in page
    assert "<td>&lt;b&gt;0.1&lt;/b&gt;</td>" in page          # cell text is escaped, not markup
    assert '<b>means</b>' in page and '<a href="targets.md">targets</a>' in page and "<code>evals.csv</code>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert page.count("<tr>") == 3


def test_every_table_writer_writes_the_html_beside_the_markdown(tmp_path):
    write_markdown_page(tmp_path / "summary.md", MD)
    assert (tmp_path / "summary.md").read_text() == MD
    assert "<table>" in (tmp_path / "summary.html").read_text()
