"""The package's layers (pyproject.toml [tool.importlinter], docs/architecture.md): the contract holds
on the code as it is, breaks when a lower layer imports a higher one, and no modules import each
other in a circle."""
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent), "LC_ALL": "C.UTF-8"}
    return subprocess.run([LINT, "--no-cache", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_layer_contract_is_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "negfree layers KEPT" in r.stdout


@pytest.mark.parametrize("lower, higher", [
    ("negfree/common/io.py", "negfree.train.loop"),            # a foundation reaching into a stage
    ("negfree/data/schema.py", "negfree.score.reference"),     # data under the stages
    ("negfree/train/records.py", "negfree.score.reference"),   # one stage into its sibling
    ("negfree/report/tables.py", "negfree.jobs.sweeps"),       # the report into the config-to-jobs layer
])
def test_an_upward_import_breaks_the_contract(tmp_path, lower, higher):
    shutil.copytree(ROOT / "negfree", tmp_path / "negfree", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    f = tmp_path / lower
    f.write_text(f.read_text() + f"\n\ndef _shortcut():\n    import {higher}  # noqa: F401\n")
    r = _lint(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "negfree layers BROKEN" in r.stdout
    assert lower.replace("/", ".")[:-3] in r.stdout and higher in r.stdout


def test_no_modules_import_each_other_in_a_circle():
    graph = grimp.build_graph("negfree", cache_dir=None)
    imports = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    circles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(m):   # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in imports[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = set()
            while not component or m not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                circles.append(sorted(component))

    for m in sorted(imports):
        if m not in index:
            visit(m)
    assert circles == []
