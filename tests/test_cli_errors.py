"""A demanding user's bad paths, bad options and odd data: every command answers with one
line per problem and its documented exit status, never a traceback, and creates nothing
when it refuses. No output ever replaces an input."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcnxs
from fcnxs.data.synth import write_synthetic_voc
from fcnxs.inference.inputs import expand_inputs
from fcnxs.training.settings import TrainSettings


def assert_one_line(err: list[str], *words: str) -> None:
    assert len(err) == 1, err
    assert err[0].startswith("fcnxs: error: ") and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0], err


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content: the state nothing may change."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:
    return write_synthetic_voc(tmp_path_factory.mktemp("ds") / "ds64", 6, height=64, width=64)


@pytest.fixture
def work(tmp_path, ds) -> Path:
    """A scratch folder holding a copy of the dataset and a photo."""
    shutil.copytree(ds, tmp_path / "ds")
    (tmp_path / "same").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(
        tmp_path / "same" / "cat.png"
    )
    return tmp_path


# ---------------------------------------------------------------- outputs never replace inputs


def test_segment_refuses_to_write_a_mask_over_its_photo(cli, work, model_file):
    before = tree(work)
    status, _, err = cli("segment", work / "same" / "cat.png", "--model", model_file,
                         "-o", work / "same")  # fmt: skip
    assert status == 2
    assert_one_line(err, "cat.png: would replace the input")
    assert tree(work) == before


def test_evaluate_refuses_to_save_predictions_over_the_ground_truth(cli, work, model_file):
    before = tree(work)
    status, out, err = cli("evaluate", "--model", model_file, "--data", work / "ds", "--split",
                           "val", "--save-predictions", work / "ds" / "SegmentationClass",
                           "--out", work / "r.json")  # fmt: skip
    assert status == 2 and out == ""
    assert_one_line(err, "SegmentationClass", "would replace the input")
    status, _, err = cli("evaluate", "--model", model_file, "--data", work / "ds", "--split",
                         "val", "--out", work / "ds" / "classes.txt")  # fmt: skip
    assert status == 2
    assert_one_line(err, "classes.txt: would replace the input")
    assert tree(work) == before


def test_make_lst_refuses_to_overwrite_the_split_file_it_reads(cli, work):
    split = work / "ds" / "ImageSets" / "Segmentation" / "train.txt"
    before = split.read_bytes()
    status, _, err = cli("data", "make-lst", work / "ds", "--split", "train", "-o", split)
    assert status == 2
    assert_one_line(err, "train.txt: would replace the input")
    assert split.read_bytes() == before
    # through a symbolic link to the same file, too
    (work / "link.txt").symlink_to(split)
    assert cli("data", "make-lst", work / "ds", "--split", "train", "-o", work / "link.txt")[0] == 2


@pytest.mark.slow  # several full-size models: seconds each where the CPU is slow
def test_convert_create_and_export_refuse_to_replace_their_source(cli, tmp_path, model_file):
    model = tmp_path / "m.safetensors"
    shutil.copyfile(model_file, model)
    before = model.read_bytes()
    for argv in (["convert", model, "-o", model], ["create", "--arch", "fcn8s", "--from", model,
                 "-o", model], ["export", model, "-o", model]):  # fmt: skip
        status, _, err = cli(*argv)
        assert status == 2, argv
        assert_one_line(err, "would replace the input")
    assert model.read_bytes() == before


def _fake_run(folder: Path) -> None:
    folder.mkdir()
    settings = TrainSettings(arch="fcn32s", train_data={"root": "x", "split": "train"})
    (folder / "run.json").write_text(json.dumps(settings.to_dict()))
    (folder / "checkpoint.pt").write_bytes(b"a checkpoint")


def test_train_refuses_a_folder_that_holds_a_run_or_anything_else(cli, work):
    run = work / "run"
    _fake_run(run)
    before = tree(work)
    argv = ["train", "--arch", "fcn32s", "--data", work / "ds", "--split", "train"]
    status, _, err = cli(*argv, "--out", run)
    assert status == 2
    assert_one_line(err, "holds a training run", f"--resume {run}", "--overwrite")
    status, _, err = cli(*argv, "--out", work / "same")
    assert status == 2
    assert_one_line(err, "is not empty (it holds cat.png)")
    assert tree(work) == before


def test_a_resumed_run_refuses_recipe_changes_it_would_ignore(cli, work):
    run = work / "run"
    _fake_run(run)
    for option in (["--lr", "5"], ["--batch-size", "4"], ["--flip"], ["--data", work / "ds"]):
        status, _, err = cli("train", "--resume", run, *option)
        assert status == 2, option
        assert_one_line(err, f"{option[0]}: {run / 'run.json'} records", "a resumed run keeps")
        assert "--epochs" in err[0]


def test_a_resumed_run_takes_the_command_line_that_started_it(cli, work):
    """Its options, all equal to run.json's, are taken; one that differs is named with
    both values."""
    run = work / "run"
    _fake_run(run)
    recorded = json.loads((run / "run.json").read_text())
    same = ["--arch", recorded["arch"], "--seed", str(recorded["seed"]), "--out", run]
    status, _, err = cli("train", *same, "--seed", "7", "--resume", run)
    assert status == 2
    assert_one_line(err, f"--seed: {run / 'run.json'} records {recorded['seed']}, not 7")
    status, _, err = cli("train", *same, "--resume", run)
    assert not any("records" in line for line in err), err


# ---------------------------------------------------------------- bad output paths


def _bad_outputs(work: Path, model_file: str, ds: Path) -> list[list]:
    a_file, a_folder = work / "a_file", work / "a_folder"
    a_file.write_text("x")
    a_folder.mkdir()
    photo = work / "same" / "cat.png"
    dataset = ["--data", ds, "--split", "train"]
    cases = []
    for out in (a_file, a_file / "below", ""):
        cases.append(["segment", photo, "--model", model_file, "-o", out])
        cases.append(["data", "synth", out])
        cases.append(["train", "--arch", "fcn32s", *dataset, "--out", out])
        cases.append(["pipeline", *dataset, "--out", out])
        cases.append(["demo", "--out", out])
    for out in (a_folder, a_file / "x.json", ""):
        cases.append(["data", "make-lst", ds, "--split", "train", "-o", out])
        cases.append(["evaluate", "--model", model_file, *dataset, "--out", out])
        cases.append(["convert", model_file, "-o", out])
        cases.append(["create", "--arch", "fcn8s", "-o", out])
        cases.append(["export", model_file, "-o", out])
    return cases


def test_bad_output_paths_are_one_line_usage_errors(cli, work, model_file, ds):
    cases = _bad_outputs(work, model_file, ds)
    before = tree(work)
    for argv in cases:
        status, _, err = cli(*argv)
        assert status == 2, argv
        assert_one_line(err)
        assert "argument" in err[0] and ("-o" in err[0] or "out" in err[0].lower()), argv
    assert tree(work) == before


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder we may not write in: one without write permission, or for root (whom
    permissions do not stop) the kernel's /proc/sys."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o555)
        return folder
    assert not os.access("/proc/sys", os.W_OK), "root may write in /proc/sys here"
    return Path("/proc/sys")


def test_a_read_only_parent_is_refused_before_anything_runs(cli, tmp_path, model_file):
    locked = _read_only_folder(tmp_path)
    for argv in (
        ["create", "--arch", "fcn8s", "-o", locked / "m.safetensors"],
        ["data", "synth", locked / "new"],
        ["segment", model_file, "--model", model_file, "-o", locked / "masks"],
    ):
        status, _, err = cli(*argv)
        assert status == 2, argv
        assert_one_line(err, f"cannot write in {locked}")


# ---------------------------------------------------------------- ranges


RANGES = [
    ["train", "--workers", "-1"], ["train", "--dropout", "1.5"], ["train", "--scale", "0", "1"],
    ["train", "--log-every", "0"], ["train", "--momentum", "-2"], ["train", "--momentum", "1"],
    ["train", "--cut-off-size", "-5"], ["train", "--crop-size", "0"],
    ["train", "--save-every", "0"], ["train", "--epochs", "0"], ["train", "--lr", "0"],
    ["train", "--lr", "nan"], ["train", "--batch-size", "0"], ["train", "--weight-decay", "-1"],
    ["pipeline", "--epochs", "1", "0", "1"], ["evaluate", "--workers", "-1"],
    ["export", "--opset", "5"], ["export", "--opset", "99"], ["serve", "--port", "70000"],
    ["serve", "--port", "0"], ["serve", "--workers", "0"], ["serve", "--queue", "-1"],
    ["serve", "--max-upload-mb", "0"], ["create", "--num-classes", "0"],
    ["create", "--num-classes", "300"], ["segment", "--max-pixels", "0"],
    ["segment", "--tile", "32"], ["segment", "--tile", "big"],
    ["demo", "--heldout-images", "-1"], ["demo", "--train-images", "0"],
    ["demo", "--epochs", "1", "0", "1"], ["data", "synth", "--val-fraction", "1.5"],
    ["data", "synth", "--num-images", "0"], ["data", "synth", "--height", "4"],
]  # fmt: skip


@pytest.mark.parametrize("argv", RANGES, ids=" ".join)
def test_out_of_range_options_stop_at_the_parser(cli, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(*argv)
    assert status == 2
    assert_one_line(err, f"argument {argv[1]}" if argv[1].startswith("-") else "argument")
    assert list(tmp_path.iterdir()) == []


def test_scale_needs_low_at_most_high(cli, tmp_path, ds):
    status, _, err = cli("train", "--arch", "fcn32s", "--data", ds, "--split", "train",
                         "--out", tmp_path / "run", "--scale", "2", "0.5")  # fmt: skip
    assert status == 2
    assert_one_line(err, "--scale takes LOW HIGH with 0 < LOW ≤ HIGH")
    assert not (tmp_path / "run").exists()


def test_synth_leaves_something_to_train_on_and_never_writes_into_a_full_folder(cli, work):
    status, _, err = cli("data", "synth", work / "new", "--num-images", "2",
                         "--val-fraction", "0.9")  # fmt: skip
    assert status == 2 and not (work / "new").exists()
    assert_one_line(err, "leaves none to train on")
    before = tree(work)
    status, _, err = cli("data", "synth", work / "ds")
    assert status == 2
    assert_one_line(err, "not empty")
    assert tree(work) == before


# ---------------------------------------------------------------- models and odd files


def test_model_files_that_are_not_what_they_say(cli, tmp_path, model_file):
    (tmp_path / "x.caffemodel").mkdir()
    status, _, err = cli("info", tmp_path / "x.caffemodel")
    assert status == 2
    assert_one_line(err, "is a directory, not a model file")

    from safetensors.torch import save_file

    config = fcnxs.load_model(model_file).config
    import torch

    fake = tmp_path / "fake.safetensors"
    save_file({"x": torch.zeros(1)}, fake, metadata={"format": "fcnxs-model",
              "format_version": "1", "config": config.to_json()})  # fmt: skip
    status, out, err = cli("info", fake)
    assert status == 2 and "fcn8s" not in out
    assert_one_line(err, "does not match its fcn8s configuration")

    status, _, err = cli("convert", model_file, "--arch", "fcn16s", "-o", tmp_path / "c")
    assert status == 2
    assert_one_line(err, "holds an fcn8s, but --arch says fcn16s")
    status, _, err = cli("convert", model_file, "--num-classes", "3", "-o", tmp_path / "c")
    assert status == 2
    assert_one_line(err, "defines 5 classes, but --num-classes says 3")
    assert not (tmp_path / "c").exists()


def test_a_pth_holding_objects_is_refused_without_advice_to_unpickle(cli, tmp_path):
    import torch

    torch.save({"layer": torch.nn.Linear(2, 2)}, tmp_path / "module.pth")
    status, _, err = cli("create", "--arch", "fcn32s", "--from", tmp_path / "module.pth",
                         "-o", tmp_path / "m.safetensors")  # fmt: skip
    assert status == 2
    assert_one_line(err, "not a PyTorch state dict", "never unpickles")
    assert "weights_only" not in err[0] and "Warning" not in err[0]


def test_a_model_over_255_classes_cannot_be_made(cli, tmp_path):
    with pytest.raises(ValueError, match="from 1 to 255"):
        fcnxs.ModelConfig("fcn32s", num_classes=300)
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(300)))
    with pytest.raises(fcnxs.FcnxsError, match="more than 255 classes"):
        fcnxs.data.classes.read_classes_file(tmp_path / "classes.txt")


def test_info_prints_each_colour_on_one_line(cli, model_file):
    status, out, _ = cli("info", model_file)
    assert status == 0
    assert '"mean": [123.68, 116.779, 103.939]' in out
    assert "[128, 0, 0]" in out
    # the offsets printed, and why the configuration then says "crop_offsets": null
    assert "crop offsets: {'score_pool4c': 5, 'score_pool3c': 9, 'upscore': 31} (derived" in out


# ---------------------------------------------------------------- inputs of segment


def test_segment_reports_every_input_problem_at_once_before_loading(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for name in ("x.png", "y.png"):
            Image.new("RGB", (8, 8)).save(tmp_path / folder / name)
    status, out, err = cli("segment", tmp_path / "empty", tmp_path / "missing.jpg",
                           tmp_path / "a" / "x.png", tmp_path / "b" / "x.png",
                           tmp_path / "a" / "y.png", tmp_path / "b" / "y.png",
                           "--model", tmp_path / "not-loaded.safetensors",
                           "-o", tmp_path / "out")  # fmt: skip
    assert status == 2 and "segment:" not in out
    assert len(err) == 4 and all(line.startswith("fcnxs: error: ") for line in err)
    assert "a folder with no images in it" in err[0] and "no such file" in err[1]
    assert "would both be written as x.png" in err[2] and "as y.png" in err[3]
    assert not (tmp_path / "out").exists()


def test_globs_do_not_follow_symbolic_link_loops(tmp_path):
    (tmp_path / "g" / "a" / "b").mkdir(parents=True)
    for name in ("top.png", "a/1.png", "a/b/2.png", "a/.hidden.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "g" / name)
    (tmp_path / "g" / "a" / "b" / "loop").symlink_to("..")
    found = expand_inputs([f"{tmp_path}/g/**/*.png"])
    assert sorted(str(out) for _, out in found) == ["a/1", "a/b/2", "top"]
    assert len(expand_inputs([str(tmp_path / "g")], recursive=True)) == 3


def test_segment_says_what_it_wrote(cli, tmp_path, model_file):
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a picture")
    status, out, err = cli("segment", tmp_path / "a.png", tmp_path / "b.png",
                           "--model", model_file, "-o", tmp_path / "out")  # fmt: skip
    assert status == 1
    assert f"segment: 1 of 2 images written to {tmp_path / 'out'}" in out
    assert_one_line([e for e in err if e.startswith("fcnxs: error")], "b.png")


# ---------------------------------------------------------------- nothing left behind


def test_failed_commands_create_no_folders(cli, tmp_path, work, model_file):
    for argv in (
        ["train", "--arch", "fcn32s", "--data", tmp_path / "nowhere", "--split", "train",
         "--out", tmp_path / "run"],
        ["train", "--arch", "fcn32s", "--data", work / "ds", "--split", "train",
         "--init", tmp_path / "missing.safetensors", "--out", tmp_path / "run"],
        ["pipeline", "--data", work / "ds", "--split", "nosuchsplit", "--out", tmp_path / "p"],
        ["evaluate", "--model", model_file, "--data", work / "ds", "--split", "val",
         "--save-predictions", tmp_path / "preds", "--out", tmp_path / "e" / "r.json"],
    ):  # fmt: skip
        status, _, err = cli(*argv)
        assert status == 2, argv
        assert_one_line(err)
    for name in ("run", "p", "preds", "e"):
        assert not (tmp_path / name).exists(), name


def test_demo_never_writes_into_a_folder_that_is_not_a_demo(cli, work):
    before = tree(work)
    status, _, err = cli("demo", "--out", work)
    assert status == 2
    assert_one_line(err, "not a demo's")
    assert tree(work) == before


def test_tf32_on_a_cpu_is_refused_before_any_file_is_written(cli, tmp_path, work):
    """tf32 is a GPU format; on a CPU, every command that trains refuses it up front."""
    cases = {
        "train": ["train", "--arch", "fcn32s", "--data", work / "ds", "--split", "train",
                  "--out", tmp_path / "run", "--device", "cpu"],
    }  # fmt: skip
    if not torch.cuda.is_available():  # the demo trains where it finds a GPU, which has tf32
        cases["demo"] = ["demo", "--out", tmp_path / "demo"]
    for name, argv in cases.items():
        status, _, err = cli(*argv, "--precision", "tf32")
        assert status == 2, name
        assert_one_line(err, "tf32 exists on NVIDIA GPUs only")
    assert not (tmp_path / "demo").exists() and not (tmp_path / "run").exists()


def test_data_and_models_commands_document_every_option():
    from fcnxs.cli import build_parser

    def check(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    check(sub, f"{name} {sub_name}")
            elif action.dest != "help":
                assert action.help, f"{name}: {action.option_strings or action.dest}"

    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("data", "models"):
        check(commands[name], name)


BINARY = bytes(range(256)) * 4


def test_binary_text_files_are_one_line_errors(cli, work):
    """A classes, split, list, labels or class-weights file that is not UTF-8 text."""
    ds = work / "ds"
    binary = work / "binary.txt"
    binary.write_bytes(BINARY)
    (ds / "ImageSets" / "Segmentation" / "bin.txt").write_bytes(BINARY)
    cases = [
        (("data", "check", ds, "--split", "train", "--classes", binary), "not a classes file"),
        (("data", "check", ds, "--split", "bin"), "not a split file"),
        (("data", "check", "--data", ds, "--list", binary), "not a list file"),
        (("data", "import", "labelme", work, "--labels", binary, "-o", work / "new"),
         "not a labels file"),
        (("train", "--arch", "fcn32s", "--data", ds, "--split", "train", "--out", work / "run",
          "--class-weights", binary), "not a class-weights file"),
    ]  # fmt: skip
    for argv, words in cases:
        status, _, err = cli(*argv)
        assert status == 2, (argv, err)
        assert_one_line(err, words, "not UTF-8 text")
    assert not (work / "new").exists() and not (work / "run").exists()


@pytest.mark.parametrize(
    "content, words",
    [
        (BINARY, "not UTF-8 text"),
        (b"[1]", "not a JSON object"),
        (b'{"epochs": 3}', "cannot use"),
        (b'{"arch": 5, "train_data": {}}', "arch is one of fcn32s, fcn16s, fcn8s, not 5"),
        (
            b'{"arch": "fcn32s", "train_data": {}, "epochs": "x"}',
            "epochs must be an integer, not 'x'",
        ),
    ],
)
def test_a_hand_edited_run_json_is_one_line(cli, work, content, words):
    run = work / "run"
    run.mkdir()
    (run / "run.json").write_bytes(content)
    status, _, err = cli("train", "--resume", run)
    assert status == 2
    assert_one_line(err, "run.json", words)


def test_a_misspelt_option_is_named_with_the_one_meant(cli, work):
    status, _, err = cli("segment", work / "same" / "cat.png", "--modle", "m.safetensors",
                         "-o", work / "out")  # fmt: skip
    assert status == 2
    assert_one_line(err, "unrecognized option --modle (did you mean --model?)")
    status, _, err = cli("data", "fetch", "voc2012", "--outt", work / "d")
    assert status == 2 and "did you mean --out?" in err[0]


def test_a_wrong_split_or_a_file_for_a_root_say_what_would_do(cli, work):
    status, _, err = cli("data", "check", "--data", work / "ds", "--split", "trian")
    assert status == 2
    assert_one_line(err, "no split 'trian' in this voc root; it has", "train", "val")
    status, _, err = cli("data", "check", "--data", work / "same" / "cat.png", "--split", "val")
    assert status == 2
    assert_one_line(err, "cat.png: is a file; --data takes a dataset's folder")


def test_a_runs_best_is_said_rounded_or_why_there_is_none():
    from fcnxs.training.loop import TrainResult

    assert TrainResult(Path("r"), 0.12882153022317352, []).best_line == "best validation mIoU 0.129"
    assert "no validation split" in TrainResult(Path("r"), None, []).best_line
