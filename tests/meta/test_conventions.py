"""Project rules that a reader cannot enforce: checked over the source tree."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("chipctl", "drivers", "simulator")
SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
CLOCK_MODULE = ROOT / "drivers" / "clock.py"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name):
                yield node, f"{value.id}.{node.func.attr}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_time_only_through_the_clock(path):
    if path == CLOCK_MODULE:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports_time = any(isinstance(n, ast.ImportFrom) and n.module == "time" for n in ast.walk(tree))
    assert not imports_time, f"{path}: 'from time import ...' (use drivers.clock)"
    bad = [
        f"{path.relative_to(ROOT)}:{n.lineno}: {name}"
        for n, name in _calls(tree)
        if name in ("time.sleep", "time.time", "time.monotonic", "time.perf_counter")
    ]
    assert not bad, "time must go through drivers.clock: " + ", ".join(bad)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_print_outside_the_cli(path):
    if path.name == "cli.py" or "gui" in path.parts:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prints = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
    ]
    assert not prints, f"{path}: print() at lines {prints} (use logging)"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_eval_or_exec(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id in ("eval", "exec")
    ]
    assert not bad, f"{path}: eval/exec at {bad}"


def test_layering_by_grep():
    # import-linter checks this in CI too; this keeps the rule visible in the test suite.
    pattern = re.compile(r"^\s*(from|import)\s+(\w+)", re.M)
    for pkg, forbidden in (
        ("drivers", {"chipctl", "simulator"}),
        ("simulator", {"chipctl", "drivers"}),
    ):
        for path in (ROOT / pkg).rglob("*.py"):
            found = {m.group(2) for m in pattern.finditer(path.read_text(encoding="utf-8"))}
            assert not found & forbidden, f"{path} imports {found & forbidden}"
    for path in (ROOT / "chipctl").rglob("*.py"):
        if path.name in ("rig.py", "cli.py"):
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import)\s+simulator\b", text, re.M), path


def test_every_driver_constructor_does_no_io():
    from chipctl.config import DeviceConfig
    from chipctl.rig import DRIVERS, BuildContext
    from drivers.clock import VirtualClock
    from drivers.syringes import lookup_syringe
    from drivers.testing import ScriptedTransport

    for name, spec in DRIVERS.items():
        if not spec.serial:
            continue  # no link to write to: built over the simulated chip
        transport = ScriptedTransport([])
        cfg = DeviceConfig(
            name="dev", driver=name, link="sim://x/y", syringe=lookup_syringe("BD Plastipak 10 mL")
        )
        spec.build(cfg, BuildContext(VirtualClock(), transport))
        assert transport.writes == [], f"{name}: constructor wrote {transport.writes}"
