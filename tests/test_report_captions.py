"""Every report caption (report/*.rst) renders without a docutils system message.

The Snakemake report renders a caption as jinja-templated reStructuredText: the file plus the
report's link targets, through jinja2 (``snakemake``, ``categories``, ``files``), then docutils'
``publish_parts(..., writer_name="html")``; a warning or error there lands in the report as a
"Docutils System Messages" box (``|y|`` is read as an undefined substitution). Item captions go
through Snakemake's own ``FileRecord.render`` here, with the wildcards of the rule output they
caption and the demo's and the papers' config; the workflow description as auto_report does it.
"""
import io
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

pytestmark = pytest.mark.filterwarnings("ignore:Argument \"writer_name\" will be removed:PendingDeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"demo": yaml.safe_load((ROOT / "configs/demo.yaml").read_text()),
           "papers": yaml.safe_load((ROOT / "configs/papers.yaml").read_text())}
WILDCARD_VALUES = {"exp": "demo", "item": "dft/table2", "sweep": "dft_gamma", "name": "gamma"}

# snakemake/report/__init__.py, auto_report: appended to every caption before jinja
RST_LINKS = textwrap.dedent("""

.. _Workflow: javascript:show_panel('workflow')
.. _Statistics: javascript:show_panel('statistics')
{% for cat, catresults in categories|dictsort %}
.. _{{ cat.name }}: javascript:app.showCategory('{{ cat.name|urlencode }}')
{% endfor %}
{% for res in files %}
.. _{{ res.target }}: javascript:app.showResultInfo('{{ res.path|urlencode }}')
{% endfor %}
""")


def _captioned():
    """caption file -> wildcard names of the report(...) outputs it captions (workflows/**/*.smk)."""
    out = {}
    for smk in sorted((ROOT / "workflows").rglob("*.smk")):
        for fstr, pattern, caption in re.findall(r'report\(\s*(f?)"([^"]+)",\s*caption="\.\./report/([^"]+)"',
                                                smk.read_text()):
            names = set() if fstr else set(re.findall(r"{(\w+)", pattern))
            out.setdefault(caption, set()).update(names)
    return out


CAPTIONED = _captioned()


def _env_and_context():
    from jinja2 import Environment
    from snakemake.report import Category

    env = Environment(trim_blocks=True, lstrip_blocks=True)   # as auto_report makes it
    categories = {Category(name): {} for name in ("Training", "Tables", "Analytic figures", "Claims ledger")}
    files = [SimpleNamespace(target=t, path=Path("results") / t) for t in ("fig3.png", "summary.html")]
    return env, categories, files


def _problems(html: str, warnings: str) -> str:
    found = [m for m in ("System Message", "system-message") if m in html]
    return (warnings + " ".join(found)).strip()


def test_every_caption_file_is_used_by_the_workflow():
    used = set(CAPTIONED) | {"workflow.rst"}   # workflow.rst: `report:` in workflows/report.smk
    assert {p.name for p in (ROOT / "report").glob("*.rst")} <= used


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("caption", sorted(CAPTIONED))
def test_item_caption_renders_without_docutils_messages(caption, config, capsys):
    from snakemake.iocontainers import Namedlist, Wildcards
    from snakemake.report import FileRecord

    env, categories, files = _env_and_context()
    wildcards = Wildcards(fromdict={k: WILDCARD_VALUES[k] for k in sorted(CAPTIONED[caption])})
    job = SimpleNamespace(input=Namedlist(), output=Namedlist(), params=Namedlist(), threads=1,
                          resources=Namedlist(), log=Namedlist(),
                          rule=SimpleNamespace(name="rule_of_" + caption, module_globals={"config": CONFIGS[config]}))
    path = ROOT / "report" / caption
    record = SimpleNamespace(raw_caption=path, job=job, raw_wildcards=wildcards, caption=None,
                             workflow=SimpleNamespace(sourcecache=SimpleNamespace(open=lambda p: open(p))))
    FileRecord.render(record, env, RST_LINKS, categories, files)   # Snakemake's own caption rendering
    warnings = capsys.readouterr().err   # docutils reports to stderr
    assert record.caption and not _problems(record.caption, warnings), \
        f"{caption}: {warnings or record.caption}"
    for name in CAPTIONED[caption]:   # the wildcards the caption names are filled in
        if "{{ snakemake.wildcards.%s }}" % name in path.read_text():
            assert WILDCARD_VALUES[name] in record.caption


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_workflow_description_renders_without_docutils_messages(config):
    from docutils.core import publish_parts

    env, categories, files = _env_and_context()

    class Snakemake:   # what auto_report hands the global description
        pass
    Snakemake.config = CONFIGS[config]

    text = (ROOT / "report/workflow.rst").read_text() + RST_LINKS
    err = io.StringIO()
    html = publish_parts(env.from_string(text).render(snakemake=Snakemake, categories=categories, files=files),
                         writer_name="html", settings_overrides={"warning_stream": err})["html_body"]
    assert not _problems(html, err.getvalue()), err.getvalue() or html


def test_an_undefined_substitution_is_caught(tmp_path, capsys):
    """The check itself: the caption that once wrote ``|y|`` fails it."""
    from docutils.core import publish_parts

    err = io.StringIO()
    html = publish_parts("the deviation (S(y) - S0(y)) / |y|", writer_name="html",
                         settings_overrides={"warning_stream": err})["body"]
    assert "Undefined substitution" in _problems(html, err.getvalue())
