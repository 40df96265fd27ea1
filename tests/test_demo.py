import json
import re

import pytest

from fcnxs.apps.demo import DemoRecipe
from fcnxs.cli import main

pytestmark = pytest.mark.slow


def test_a_reduced_demo_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--train-images", "3", "--heldout-images", "2",
            "--epochs", "1", "1", "1", "--size", "40",
            "--batch-size", "2", "--lr", "0.001"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "demo: recipe: 3 training and 2 held-out" in printed
    assert re.search(
        r"demo: held-out mean IoU: fcn32s [\d.]+, fcn16s [\d.]+, fcn8s [\d.]+", printed
    )
    assert f"demo: report: {(out / 'index.html').resolve()}" in printed
    page = (out / "index.html").read_text()
    referenced = re.findall(r'src="([^"]+)"', page)
    assert len(referenced) == 2 * 4 + 1  # two held-out rows of four pictures, the curves
    for name in referenced:
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    for stage in ("fcn32s", "fcn16s", "fcn8s"):
        assert f"<h3>{stage}</h3>" in page
    # what the report shows and the final model, not each stage's resume state
    kept = sorted(p.relative_to(out / "runs").as_posix() for p in (out / "runs").rglob("*.*"))
    small = [
        f"{s}/{f}" for s in ("fcn16s", "fcn32s", "fcn8s") for f in ("metrics.jsonl", "run.json")
    ]
    assert kept == sorted([*small, "fcn8s/best.safetensors"])
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 1 << 30
    assert not list(tmp_path.glob(".demo.new-*"))
    assert "ring" in page and "mean IoU" in page
    # The recipe's options reach every stage's training, precision included.
    for stage in ("fcn32s", "fcn16s", "fcn8s"):
        settings = json.loads((out / "runs" / stage / "run.json").read_text())
        assert (settings["batch_size"], settings["lr"]) == (2, 0.001)
        assert settings["precision"] == DemoRecipe().precision
    assert f"batch 2, {DemoRecipe().precision}" in printed


def test_an_interrupted_second_demo_leaves_the_first_whole(tmp_path, monkeypatch):
    """A new demo is built beside the old one and takes its place only when complete."""
    from fcnxs.apps import demo

    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--train-images", "2", "--heldout-images", "1",
            "--epochs", "1", "1", "1", "--size", "32", "--batch-size", "2"]  # fmt: skip
    assert main(argv) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_pipeline", interrupted)
    assert main(argv) == 130
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not list(tmp_path.glob(".demo.new-*"))
    monkeypatch.undo()  # a third run completes and takes the place of the first
    assert main(argv) == 0
    assert (out / "summary.json").read_bytes() != before[out / "summary.json"]
    assert (out / "runs" / "fcn8s" / "best.safetensors").is_file()
    assert not list(tmp_path.glob(".demo.new-*"))
