"""Deploy-time checks of Node.js functions (edgefc.node.check), without a gateway."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgefc.config.manifest import FunctionSpec
from edgefc.node import find_node, node_version
from edgefc.node.check import code_problems
from tests.node.conftest import need_node


def _spec(**settings: object) -> FunctionSpec:
    return FunctionSpec.model_validate({"name": "f", "handler": "index.handler", "runtime": "nodejs20", **settings})


def test_a_good_function_has_no_problems_and_folders_are_module_paths(tmp_path: Path) -> None:
    need_node()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "main.js").write_text("exports.handler = () => 1;\n")
    (tmp_path / "index.js").write_text("exports.handler = () => 1;\nexports.init = () => {};\n")
    assert code_problems(_spec(initializer="index.init"), tmp_path, path="functions[0]") == []
    assert code_problems(_spec(handler="lib.main.handler"), tmp_path, path="functions[0]") == []


def test_a_newer_runtime_than_the_gateways_node_is_refused(tmp_path: Path) -> None:
    need_node()
    node = find_node()
    assert node is not None
    version = node_version(node)
    assert version is not None
    (tmp_path / "index.js").write_text("exports.handler = () => 1;\n")
    problems = code_problems(_spec(runtime="nodejs22"), tmp_path, path="functions[3]")
    if version[0] >= 22:
        assert problems == []
    else:
        assert problems == [f"functions[3].runtime: nodejs22 needs Node.js >= 22; this gateway has "
                            f"v{'.'.join(map(str, version))} ({node})"]  # fmt: skip


def test_no_node_on_the_gateway_is_refused_naming_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEFC_NODE", str(tmp_path / "no-such-node"))
    (tmp_path / "index.js").write_text("exports.handler = () => 1;\n")
    problems = code_problems(_spec(), tmp_path, path="functions[0]")
    assert len(problems) == 1 and problems[0].startswith("functions[0].runtime: nodejs20 needs Node.js >= 20")


@pytest.mark.parametrize("template", ["on-demand", "continuous", "driver", "app"])
def test_every_node_template_is_valid_javascript(template: str, tmp_path: Path) -> None:
    node = need_node()
    from edgefc.node.templates import TEMPLATES

    files, settings, next_step = TEMPLATES[template]
    for filename, text in files.items():
        (tmp_path / filename).write_text(text.format(name="demo"))
        checked = subprocess.run([node, "--check", str(tmp_path / filename)], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
    assert settings["mode"] in ("on_demand", "continuous") and "demo" in next_step.format(name="demo")
