"""Security: files are data, paths stay in their folder, nothing listens on the network.

1. **Static**: no module of ``chipctl``, ``drivers`` or ``simulator`` evaluates or imports
   code named at run time (``eval``, ``exec``, ``compile``, ``__import__``, ``importlib``,
   ``runpy``, pickle and friends, ``yaml.load``, ``numpy.load(allow_pickle=True)``), runs a
   shell (``shell=True``, ``os.system``, ``os.popen``, ``os.exec*``/``spawn*``) or opens a
   network socket or server, except where :data:`ALLOWED` says why it is safe. An entry of
   the allow-list that no longer matches anything fails too, so the list stays true.
2. **A TOML file cannot cause an import**: every string of an instrument config, in turn,
   is replaced by the name of a planted module that records its own import; loading and
   building the rig must give a rig or a one-line ConfigError, and never import it.
3. **Paths stay in their folder**: ``chipctl export`` writes only directly into its output
   folder whatever the position and channel names in the run file (``../../x``, ``/abs``,
   ``a\\b``, control characters, unicode...), and the default run-file name derived from a
   protocol's name stays in the runs folder.
4. **Listeners**: ``chipctl simulate serve`` opens no network socket, and its
   pseudo-terminals are readable and writable by their owner only.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipctl.api import default_run_path
from chipctl.config import load_config
from chipctl.errors import ConfigError, InputError, RunFileError
from chipctl.rig import build_rig
from drivers.clock import VirtualClock

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("chipctl", "drivers", "simulator")


# -- 1. static scan ------------------------------------------------------------------------

#: Calls of these bare names run or build code from data.
CODE_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "breakpoint"})
#: Importing these modules loads code or objects named at run time.
CODE_MODULES = frozenset(
    {
        "importlib",
        "runpy",
        "pickle",
        "cPickle",
        "_pickle",
        "dill",
        "cloudpickle",
        "marshal",
        "shelve",
        "code",
        "codeop",
        "socketserver",
        "http.server",
        "xmlrpc.server",
    }
)
#: Calls ``module.function`` that run a shell, load objects, or listen on a network.
DANGEROUS_CALLS = frozenset(
    {
        "os.system",
        "os.popen",
        "os.execv",
        "os.execve",
        "os.execl",
        "os.execlp",
        "os.execvp",
        "os.spawnl",
        "os.spawnv",
        "os.spawnlp",
        "os.spawnvp",
        "os.posix_spawn",
        "pty.spawn",
        "yaml.load",
        "yaml.unsafe_load",
        "yaml.full_load",
        "socket.socket",
        "socket.create_server",
        "socket.create_connection",
        "asyncio.start_server",
        "asyncio.start_unix_server",
    }
)

#: (file, finding) -> why it is safe. A finding is ``"import importlib"``, ``"call eval"``,
#: ``"call os.system"``, ``"shell=True"``, ``"allow_pickle=True"``...
ALLOWED: dict[tuple[str, str], str] = {
    ("chipctl/runfile/framestore.py", "import importlib"): (
        "imports the optional compression packages by fixed names (hdf5plugin, blosc2) to "
        "tell whether they are installed; no name comes from a file"
    ),
}


@dataclass(frozen=True)
class Finding:
    """One use of a risky construct."""

    path: str
    line: int
    what: str


def _dotted(node: ast.AST) -> str | None:
    """Return ``a.b.c`` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _is_true(node: ast.AST) -> bool:
    """Tell whether a keyword's value may be true (anything but the constant False/None)."""
    return not (isinstance(node, ast.Constant) and not node.value)


def scan_source(source: str, path: str) -> list[Finding]:
    """Return the risky constructs in one module's source."""
    tree = ast.parse(source, filename=path)
    found: list[Finding] = []
    aliases: dict[str, str] = {}  # local name -> module it stands for ("np" -> "numpy")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name
                if alias.name in CODE_MODULES or alias.name.split(".")[0] in CODE_MODULES:
                    found.append(Finding(path, node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if node.module in CODE_MODULES or root in CODE_MODULES:
                found.append(Finding(path, node.lineno, f"import {node.module}"))
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                aliases[alias.asname or alias.name] = full
                if full in DANGEROUS_CALLS:
                    found.append(Finding(path, node.lineno, f"import {full}"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if isinstance(node.func, ast.Name) and node.func.id in CODE_BUILTINS:
            found.append(Finding(path, node.lineno, f"call {node.func.id}"))
        if name is not None:
            head, _, rest = name.partition(".")
            resolved = aliases.get(head, head) + (f".{rest}" if rest else "")
            if resolved in DANGEROUS_CALLS:
                found.append(Finding(path, node.lineno, f"call {resolved}"))
            if resolved in ("numpy.load", "np.load") and any(
                k.arg == "allow_pickle" and _is_true(k.value) for k in node.keywords
            ):
                found.append(Finding(path, node.lineno, "allow_pickle=True"))
            if name.endswith((".bind", ".listen")) and node.args:
                found.append(Finding(path, node.lineno, f"call {name}"))
        if any(k.arg == "shell" and _is_true(k.value) for k in node.keywords):
            found.append(Finding(path, node.lineno, "shell=True"))
    return found


def _sources() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for file in sorted((REPO / package).rglob("*.py")):
            yield file.relative_to(REPO).as_posix(), file.read_text(encoding="utf-8")


def test_no_code_from_data_no_shell_no_listener_in_the_packages() -> None:
    findings = [f for path, source in _sources() for f in scan_source(source, path)]
    unexplained = [f for f in findings if (f.path, f.what) not in ALLOWED]
    assert not unexplained, "risky constructs without a justification in ALLOWED:\n" + "\n".join(
        f"{f.path}:{f.line}: {f.what}" for f in unexplained
    )
    used = {(f.path, f.what) for f in findings}
    stale = [key for key in ALLOWED if key not in used]
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("eval(text)", "call eval"),
        ("exec(code, {})", "call exec"),
        ("compile(src, 'f', 'exec')", "call compile"),
        ("m = __import__(name)", "call __import__"),
        ("import importlib\nimportlib.import_module(name)", "import importlib"),
        ("from importlib import import_module", "import importlib"),
        ("import pickle", "import pickle"),
        ("import yaml\nyaml.load(f)", "call yaml.load"),
        ("import subprocess\nsubprocess.run(cmd, shell=True)", "shell=True"),
        ("import os\nos.system(cmd)", "call os.system"),
        ("from os import system\nsystem(cmd)", "call os.system"),
        ("import numpy as np\nnp.load(p, allow_pickle=True)", "allow_pickle=True"),
        ("import socket\ns = socket.socket()", "call socket.socket"),
        ("server.bind(('0.0.0.0', 80))", "call server.bind"),
        ("import http.server", "import http.server"),
    ],
)
def test_the_scan_finds_each_construct(source: str, what: str) -> None:
    assert what in {f.what for f in scan_source(source, "x.py")}


@pytest.mark.parametrize(
    "source",
    [
        "re.compile(r'x')",
        "self._exec(step)",
        "subprocess.run(['ls'], shell=False)",
        "np.load(p)",
        "getattr(obj, 'name')",
    ],
)
def test_the_scan_leaves_safe_constructs_alone(source: str) -> None:
    assert scan_source(source, "x.py") == []


# -- 2. a TOML file cannot cause an import -------------------------------------------------

PROBE = "chipctl_security_probe"


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Plant importable modules named :data:`PROBE` (and a package); return their marker.

    Importing either one writes the marker file, so any import, by any mechanism, shows.
    """
    marker = tmp_path / "imported"
    body = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\ndef main(*a, **k): pass\n"
    (tmp_path / f"{PROBE}.py").write_text(body, encoding="utf-8")
    package = tmp_path / f"{PROBE}_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(body, encoding="utf-8")
    (package / "mod.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    for name in [m for m in sys.modules if m.startswith(PROBE)]:
        del sys.modules[name]


def _string_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, str):
        yield prefix
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _string_paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _string_paths(value, (*prefix, index))


def _config_documents() -> dict[str, dict[str, Any]]:
    reference = tomllib.loads(
        (REPO / "chipctl" / "rigs" / "reference-sim.toml").read_text(encoding="utf-8")
    )
    reference["fault"] = [{"device": "medium", "kind": "inject_stall", "at": "1 h"}]
    return {"reference": reference}


#: Spellings a loader that imports by name would act on: a module, a dotted attribute, an
#: entry-point style ``module:function``, a package's module, and a URL whose host names it.
PROBE_NAMES = [PROBE, f"{PROBE}:main", f"{PROBE}_pkg.mod.main", f"sim://{PROBE}/x"]


def _toml(value: Any) -> str:
    """A small TOML writer for the reference document (strings, numbers, lists, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"


@pytest.mark.slow
def test_no_string_of_a_config_is_ever_imported(probe: Path, tmp_path: Path) -> None:
    documents = _config_documents()
    tried = 0
    for label, document in documents.items():
        for path in _string_paths(document):
            for name in PROBE_NAMES:
                changed: Any = tomllib.loads(
                    "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in document.items())
                )
                node = changed
                for part in path[:-1]:
                    node = node[part]
                node[path[-1]] = name
                file = tmp_path / f"{label}.toml"
                file.write_text(
                    "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in changed.items()),
                    encoding="utf-8",
                )
                try:
                    build_rig(load_config(file), clock=VirtualClock())
                except ConfigError as error:
                    assert "\n" not in str(error)
                tried += 1
                assert not probe.exists(), f"{'.'.join(map(str, path))} = {name!r} imported it"
    assert tried > 100  # every string of the reference rig, several names each
    # The probe works: importing it, as a loader that took a name from the file would, shows.
    importlib.import_module(f"{PROBE}_pkg.mod")
    assert probe.read_text(encoding="utf-8").split() == [f"{PROBE}_pkg", f"{PROBE}_pkg.mod"]


def test_a_driver_named_like_python_code_is_one_clear_line(tmp_path: Path) -> None:
    file = tmp_path / "rig.toml"
    file.write_text(
        '[devices.p]\ndriver = "os.system"\nlink = "serial:///dev/ttyUSB0"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError) as info:
        build_rig(load_config(file), clock=VirtualClock())
    line = str(info.value)
    assert line.startswith(f"{file}: devices.p.driver: unknown driver 'os.system'"), line


def test_a_fault_kind_must_be_a_fault_of_the_emulator(tmp_path: Path) -> None:
    file = tmp_path / "rig.toml"
    file.write_text(
        textwrap.dedent(
            """
            [devices.medium]
            driver = "harvard"
            link = "sim://harvard/medium"
            syringe = "BD Plastipak 10 mL"

            [[fault]]
            device = "medium"
            kind = "load_syringe"
            at = "1 min"
            """
        ),
        encoding="utf-8",
    )
    try:
        rig = build_rig(load_config(file), clock=VirtualClock())
    except ConfigError:
        return  # refused at load time, as it should be
    rig.inject_fault("medium", "load_syringe")  # what the engine does at 1 min


# -- 3. paths derived from run-file content stay in their folder ---------------------------

_NAMES = st.one_of(
    st.sampled_from(
        [
            "../../x",
            "/abs",
            "a\\b",
            "..\\..\\y",
            "C:\\z",
            "x\x01y",
            "CON",
            "nul.txt",
            "~",
            "-rf",
            ".x",
            "a b",
            "é",
            "\u202etxt.exe",
            "x" * 300,
        ]
    ),
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/."),
        min_size=1,
        max_size=20,
    ),
)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run file with 2 positions x 2 channels of images (see test_acquisition)."""
    from tests.chipctl.test_acquisition import record_run

    return record_run(tmp_path_factory.mktemp("run"), n_points=1).path


def _rename_groups(path: Path, positions: dict[str, str], channel: tuple[str, str]) -> None:
    """Rename positions and one channel inside the run file, as a hand-edited file could."""
    old_channel, new_channel = channel
    with h5py.File(path, "r+") as h5:
        for number, old in enumerate(positions):
            h5.move(f"/images/{old}", f"/images/tmp{number}")
        for number, new in enumerate(positions.values()):
            _move(h5, f"/images/tmp{number}", f"/images/{new}")
        for position in positions.values():
            for suffix in ("", "_meta"):
                base = f"/images/{position}/"
                _move(h5, base + old_channel + suffix, base + new_channel + suffix)


def _move(h5: h5py.File, source: str, target: str) -> None:
    """Move a link, creating the groups a name with ``/`` in it implies."""
    parent = target.rsplit("/", 1)[0]
    if parent:
        h5.require_group(parent)
    h5.move(source, target)


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=_NAMES, second=_NAMES, channel=_NAMES)
def test_export_writes_only_into_its_folder(
    first: str,
    second: str,
    channel: str,
    recorded_run: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    work = tmp_path_factory.mktemp("export")
    run = work / "in" / "run.h5"
    run.parent.mkdir()
    shutil.copy(recorded_run, run)
    if first == second:
        second += "2"
    try:
        _rename_groups(run, {"chamber 1": first, "c4": second}, ("live", channel))
    except (ValueError, KeyError):
        return  # HDF5 itself refuses the name (empty, or taken by the other channel)
    out = work / "deep" / "out"
    before = _files_under(work)
    from chipctl.export import export_ome_tiff

    try:
        written = export_ome_tiff(run, out)
    except (InputError, RunFileError) as error:
        assert "\n" not in str(error)
        written = []
    created = _files_under(work) - before
    assert all(p.parent == out.resolve() for p in written), written
    assert all(p.resolve().parent == out.resolve() for p in created), created
    assert set(written) <= {p.resolve() for p in created}


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(name=_NAMES | st.text(max_size=40))
def test_the_default_run_file_stays_in_the_runs_folder(name: str) -> None:
    folder = Path("/nonexistent-runs-folder")
    path = default_run_path(name, dt.datetime(2026, 11, 21, 10, 15, tzinfo=dt.UTC), folder)
    assert path.parent == folder, path
    assert path.suffix == ".h5" and "\x00" not in str(path)
    assert path.name.startswith("20261121T101500Z_")


# -- 4. listeners --------------------------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _network_sockets(inodes: set[str]) -> list[str]:
    """Return the TCP/UDP entries (IPv4 and IPv6) whose inode is in ``inodes``."""
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                found.append(f"{table} {fields[1]} state {fields[3]}")
    return found


def _served_links() -> int:
    """Return how many links ``chipctl simulate serve`` serves for the reference rig."""
    from chipctl.config import reference_rig_config
    from chipctl.rig import DRIVERS

    config = reference_rig_config()
    return len({d.link for d in config.devices.values() if DRIVERS[d.driver].serial})


@pytest.mark.pty
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_simulate_serve_opens_no_network_socket_and_private_ptys(
    tmp_path: Path, chipctl_cmd: list[str]
) -> None:
    server = subprocess.Popen(
        [*chipctl_cmd, "simulate", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        lines = []
        for _ in range(_served_links()):  # one line per served link: NAME MODEL PATH
            line = server.stdout.readline()
            assert line, f"serve ended early: {server.stderr.read() if server.stderr else ''}"
            lines.append(line.split())
        paths = [Path(fields[-1]) for fields in lines]
        for path in paths:
            mode = path.stat().st_mode
            assert stat.S_ISCHR(mode), path
            assert mode & 0o077 == 0, f"{path} is open to others: {oct(mode & 0o777)}"
            assert path.stat().st_uid == os.getuid()
        assert _network_sockets(_socket_inodes(server.pid)) == []
    finally:
        server.terminate()
        server.wait(timeout=30)
