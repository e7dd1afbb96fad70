"""``chipctl analyze`` and ``chipctl report`` end to end, and the /analysis store."""

from __future__ import annotations

import hashlib
import shutil

import h5py
import numpy as np
import pytest

from chipctl.analysis import store
from chipctl.api import run_protocol
from chipctl.cli import main
from chipctl.errors import InputError
from chipctl.protocol.loader import parse_protocol
from chipctl.runfile import open_run

#: The protocol name has markup in it: reports must escape it.
NAME = "dose <i>check</i> & co"

RUN = f"""
[protocol]
name = "{NAME}"
description = "48 h of ADC on the ladder, brightfield at 0 and 48 h, live/dead stain at the end"

[syringes.drug]
contents = {{ "t-vc-mmae" = "20 nM" }}

[chambers]
control = ["chamber 8"]

[[step]]
name = "prime drug"
action = "prime"
pump = "drug"
rate = "15 uL/min"

[[step]]
name = "brightfield"
action = "image"
positions = "all"
channels = ["brightfield"]
every = "48 h"
duration = "48 h"

[[step]]
name = "exposure"
action = "dose"
drug_pump = "drug"
carrier_pump = "medium"
rate = "1 uL/min"
profile = "constant"
duration = "48 h"

[[step]]
name = "live/dead stain"
action = "exchange"
pump = "exchanger"
from = "stain"
to = "chip"
volume = "100 uL"
rate = "15 uL/min"
draw_rate = "200 uL/min"

[[step]]
name = "endpoint"
action = "image"
positions = "all"
channels = ["brightfield", "live", "dead"]
at = ["0 h"]
"""

RECOMPUTED = {"exposure", "exposure_summary", "gr", "gr_fit", "gr_time", "tumoroids", "chambers"}


def shared_run(tmp_path_factory):
    """A small finished dose-response run, simulated once per test session (also used by
    test_report): 8 chambers, brightfield at 0 and 48 h, a stain and endpoint images."""
    path = tmp_path_factory.getbasetemp() / "analysis-shared-run.h5"
    if not path.exists():
        partial = path.with_suffix(".partial.h5")
        result = run_protocol(parse_protocol(RUN, "cli.toml"), sim=True, out=partial, seed=8)
        assert result.ok, result.message
        partial.rename(path)
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    return shared_run(tmp_path_factory)


@pytest.fixture
def run_copy(finished_run, tmp_path):
    path = tmp_path / "copy.h5"
    shutil.copyfile(finished_run, path)
    return path


def digest(path, *, skip_analysis=True):
    """A digest of every dataset and attribute, except under /analysis if asked."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        for key, value in sorted(f.attrs.items()):
            h.update(f"/@{key}={value!r}".encode())

        def visit(name, obj):
            if skip_analysis and (name == "analysis" or name.startswith("analysis/")):
                return
            for key, value in sorted(obj.attrs.items()):
                h.update(f"{name}@{key}={value!r}".encode())
            if isinstance(obj, h5py.Dataset):
                h.update(name.encode())
                h.update(np.ascontiguousarray(obj[()]).tobytes())

        f.visititems(visit)
    return h.hexdigest()


def analysis_groups(path):
    with h5py.File(path, "r") as f:
        return sorted(f["analysis"].keys()) if "analysis" in f else []


@pytest.mark.slow
def test_analyze_stores_the_recomputed_tables_and_touches_nothing_else(run_copy, capsys):
    everything = digest(run_copy, skip_analysis=False)
    assert main(["analyze", str(run_copy), "--no-store", "--bootstrap", "0"]) == 0
    assert "not stored" in capsys.readouterr().out
    assert digest(run_copy, skip_analysis=False) == everything

    before = digest(run_copy)
    assert main(["analyze", str(run_copy), "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert "t-vc-mmae: GR50 " in out
    assert "stored: /analysis/" in out
    assert digest(run_copy) == before
    assert set(analysis_groups(run_copy)) == RECOMPUTED
    with open_run(run_copy) as run:
        for name in RECOMPUTED:
            units = run.table_units(f"/analysis/{name}")
            assert all(isinstance(u, str) for u in units.values())
        gr = run.table("/analysis/gr")
        assert set(gr["role"]) == {"treated", "control"}
        assert list(gr["position"][gr["role"] == "control"]) == ["chamber 8"]
        assert run.table_units("/analysis/gr")["conc_nm"] == "nM"
        fit = run.table("/analysis/gr_fit")
        assert list(fit["species"]) == ["t-vc-mmae"]
        assert fit["verdict"][0].startswith("t-vc-mmae: GR50 ")
        exposure = run.table("/analysis/exposure")
        assert len(exposure["t_s"]) > 100


@pytest.mark.slow
def test_report_writes_the_page(finished_run, tmp_path, capsys):
    before = digest(finished_run, skip_analysis=False)
    assert (
        main(["report", str(finished_run), "--out", str(tmp_path / "r"), "--bootstrap", "20"]) == 0
    )
    assert "report: " in capsys.readouterr().out
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert "t-vc-mmae: GR50 " in page
    assert digest(finished_run, skip_analysis=False) == before  # a report never writes the run


def one_error_line(capsys, code, argv):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_missing_run_file_is_bad_input(capsys, tmp_path):
    err = one_error_line(capsys, 2, ["analyze", str(tmp_path / "nope.h5")])
    assert "nope.h5" in err and "no such file" in err


def test_a_file_that_is_not_a_run_is_bad_input(capsys, tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    err = one_error_line(capsys, 2, ["report", str(path), "--out", str(tmp_path / "r")])
    assert "not a chipctl run file" in err


def test_negative_bootstrap_is_bad_input(capsys, tmp_path):
    err = one_error_line(capsys, 2, ["analyze", str(tmp_path / "x.h5"), "--bootstrap", "-1"])
    assert "--bootstrap" in err


@pytest.mark.slow
def test_report_into_a_file_is_bad_input(finished_run, capsys, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    err = one_error_line(capsys, 2, ["report", str(finished_run), "--out", str(target)])
    assert "not a folder" in err


@pytest.mark.slow
def test_a_run_still_being_written_is_not_analysed_into(run_copy, capsys):
    with h5py.File(run_copy, "r+") as f:
        f.attrs["status"] = "running"
    err = one_error_line(capsys, 2, ["analyze", str(run_copy), "--bootstrap", "0"])
    assert "still being written" in err


def test_an_interrupted_store_keeps_the_previous_results(run_copy, monkeypatch):
    old = {"first": store.Table({"x": np.arange(3.0)}, {"x": "s"})}
    store.write_analysis(run_copy, old)
    before = digest(run_copy, skip_analysis=False)
    original = store._write_table
    calls = []

    def interrupted(group, table):
        calls.append(group.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        original(group, table)

    monkeypatch.setattr(store, "_write_table", interrupted)
    new = {
        "first": store.Table({"x": np.arange(5.0)}, {"x": "s"}),
        "second": store.Table({"y": np.arange(2.0)}, {"y": "1"}),
    }
    with pytest.raises(KeyboardInterrupt):
        store.write_analysis(run_copy, new)
    assert digest(run_copy, skip_analysis=False) == before
    with open_run(run_copy) as run:
        assert run.table("/analysis/first")["x"].tolist() == [0.0, 1.0, 2.0]
    monkeypatch.setattr(store, "_write_table", original)
    store.write_analysis(run_copy, new)
    with open_run(run_copy) as run:
        assert run.table("/analysis/first")["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert run.table_units("/analysis/second") == {"y": "1"}


def test_tables_that_are_not_well_formed_are_refused(run_copy):
    with pytest.raises(InputError, match="columns differ in length"):
        store.write_analysis(
            run_copy, {"bad": store.Table({"a": np.zeros(2), "b": np.zeros(3)}, {"a": "", "b": ""})}
        )
    with pytest.raises(InputError, match="not a plain identifier"):
        store.write_analysis(run_copy, {"../x": store.Table({}, {})})
