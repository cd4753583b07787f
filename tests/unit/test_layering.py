"""The layering check (local/layering.py) on this repository: no rule is broken and there is no
import cycle; and on small made-up trees, each rule does catch its breach."""
from pathlib import Path

import pytest

from local import layering

pytestmark = pytest.mark.unit

@pytest.fixture(scope="module")
def repository():
    return layering.check()


def test_the_repository_breaks_no_layering_rule(repository):
    bad, _, _ = repository
    assert bad == []


def test_the_repository_has_no_import_cycle(repository):
    _, graph, found = repository
    assert "bench" in graph and "tests" in graph and "common.store" in graph, "the graph covers the project"
    assert found == [], "import cycle(s): " + "; ".join(" <-> ".join(c) for c in found)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in layering.PROJECT_PACKAGES:
        (root / package).mkdir(exist_ok=True)
    return root


@pytest.mark.parametrize("files, rule", [
    ({"common/store/sqlite.py": "from common.handlers import search\n", "common/handlers/search.py": ""},
     "an adapter must not import a handler"),
    ({"common/pipeline.py": "def f():\n    import local.stack\n", "local/stack.py": ""}, "common/ must not import"),
    ({"common/pipeline.py": "from stellarmap_cli import main\n", "stellarmap_cli/main.py": ""}, "common/ must not import"),
    ({"functions/search/main.py": "import local.stack\n", "local/stack.py": ""}, "functions/ import only common"),
    ({"bench/x.py": "from tests.support import ROOT\n", "tests/support.py": ""}, "bench and tests must not import each other"),
    ({"tests/x.py": "import bench.common\n", "bench/common.py": ""}, "bench and tests must not import each other"),
    ({"local/stack.py": "from local.testing import fakes\n", "local/testing/fakes.py": ""}, "local.testing serves"),
])
def test_each_rule_catches_its_breach(tmp_path, files, rule):
    bad, _, _ = layering.check(_tree(tmp_path, files))
    assert len(bad) == 1 and rule in bad[0], bad


def test_a_cycle_is_found_and_an_import_under_type_checking_is_not_a_dependency(tmp_path):
    root = _tree(tmp_path, {
        "common/a.py": "from common import b\n",
        "common/b.py": "def f():\n    from common.c import x\n",  # a lazy import counts
        "common/c.py": "from common.a import y\n",
        "common/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from common.e import z\n",
        "common/e.py": "import common.d\n",
    })
    _, _, found = layering.check(root)
    assert found == [["common.a", "common.b", "common.c"]]
