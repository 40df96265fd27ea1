"""House rules a library user relies on: calls change nothing outside themselves, the
library logs instead of printing, and its errors name parameters (the command line names
its options)."""

from __future__ import annotations

import copy
import logging

import matplotlib
import numpy as np
import pytest

import fcnxs
from fcnxs.cli import build_parser, main
from fcnxs.core import precision
from fcnxs.core.progress import progress
from fcnxs.evaluation.report import report_dict, write_report
from fcnxs.training.settings import TrainSettings


def test_the_public_vocabulary():
    assert fcnxs.ARCHS == ("fcn32s", "fcn16s", "fcn8s")
    assert fcnxs.Segmenter is fcnxs.inference.segmenter.Segmenter


def test_building_the_command_line_probes_nothing(monkeypatch):
    def probe(dtype):
        raise AssertionError("the CPU was probed while building the parser")

    monkeypatch.setattr(precision, "native_on_cpu", probe)
    build_parser()


def test_reports_leave_matplotlibs_backend_alone(tmp_path):
    before = matplotlib.get_backend()
    names = ("a", "b")
    report = report_dict(np.array([[5, 1], [2, 7]]), names, 1)
    write_report(report, names, tmp_path / "r.json")
    assert matplotlib.get_backend() == before
    assert (tmp_path / "r_confusion.png").stat().st_size > 0


def test_the_library_logs_and_prints_nothing(capsys, caplog, monkeypatch):
    # as in a program that does not run the command line (which shows fcnxs's records)
    monkeypatch.setattr(logging.getLogger("fcnxs"), "handlers", [])
    with caplog.at_level(logging.INFO, logger="fcnxs"):
        assert list(progress(range(3), 3, "counting", unit="n")) == [0, 1, 2]
    assert capsys.readouterr() == ("", "")
    assert [r.name for r in caplog.records] == ["fcnxs.core.progress"]
    assert caplog.records[0].getMessage().startswith("counting: 3/3 (")


def test_library_errors_name_parameters_the_command_line_names_options(tmp_path, capsys):
    settings = TrainSettings(arch="fcn32s", train_data={}, scale=(2.0, 0.5))
    with pytest.raises(fcnxs.FcnxsError) as info:
        settings.validate()
    assert str(info.value) == "scale takes LOW HIGH with 0 < LOW ≤ HIGH"
    with pytest.raises(fcnxs.FcnxsError, match=r"^root needs split NAME or list_file FILE$"):
        fcnxs.data.layouts.open_dataset(root=tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "fcnxs: error: --data needs --split NAME or --list FILE\n"


def test_segment_keeps_the_callers_model_as_it_was(fcn8s_model, rng):
    model = copy.deepcopy(fcn8s_model).train()
    strides = {k: v.stride() for k, v in model.state_dict().items()}
    fcnxs.segment(model, rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    assert model.training
    assert {k: v.stride() for k, v in model.state_dict().items()} == strides
