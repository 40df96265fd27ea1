import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import fcnxs
from fcnxs.cli import allocator, main
from fcnxs.core.palette import voc_colormap
from helpers import random_image


@pytest.fixture
def images(tmp_path, rng):
    paths = []
    for name, (h, w) in [("cat.jpg", (75, 100)), ("tiny.png", (9, 13))]:
        path = tmp_path / name
        Image.fromarray(random_image(rng, h, w)).save(path)
        paths.append(path)
    return paths


def test_segment_writes_palette_pngs_and_logits(tmp_path, images, model_file, fcn8s_model):
    out = tmp_path / "out"
    assert (
        main(["segment", *map(str, images), "--model", model_file, "-o", str(out), "--logits"]) == 0
    )
    for path in images:
        png = Image.open(out / f"{path.stem}.png")
        assert png.mode == "P" and png.size == Image.open(path).size
        assert png.getpalette()[: 5 * 3] == [v for c in voc_colormap(5) for v in c]
        logits = np.load(out / f"{path.stem}.npy")
        assert logits.dtype == np.float32 and logits.shape == (5, png.size[1], png.size[0])
        assert np.array_equal(np.asarray(png), logits.argmax(0))
        assert np.array_equal(np.asarray(png), fcnxs.segment(fcn8s_model, Image.open(path)))
    assert sorted(p.name for p in out.iterdir()) == ["cat.npy", "cat.png", "tiny.npy", "tiny.png"]


def test_segment_goes_on_past_a_bad_image(tmp_path, images, model_file, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"garbage")
    out = tmp_path / "out"
    assert main(["segment", str(bad), str(images[0]), "--model", model_file, "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: not an image file" in err
    assert sorted(p.name for p in out.iterdir()) == ["cat.png"]
    assert main(["segment", str(bad), "--model", model_file, "-o", str(out)]) == 2


@pytest.mark.slow
def test_create_from_a_coarser_model_reports_the_transfer(tmp_path, model_file, capsys):
    out = tmp_path / "fcn8s-from-8s.safetensors"
    assert main(["create", "--arch", "fcn16s", "--from", model_file, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bilinear-initialised: bigscore.weight" in printed
    assert fcnxs.load_model(out).config.arch == "fcn16s"
    assert main(["info", str(out)]) == 0
    assert "fcn16s, 5 classes" in capsys.readouterr().out


def test_bad_model_exits_2_with_one_line_and_no_traceback(tmp_path, images):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"\x00" * 100)
    command = ["segment", str(images[0]), "--model", str(fake), "-o", str(tmp_path / "out")]
    run = subprocess.run(
        [sys.executable, "-m", "fcnxs", *command], capture_output=True, text=True, check=False
    )
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"fcnxs: error: {fake}: ")
    assert not (tmp_path / "out").exists()


FAULTS_AFTER_FREEING = """
import importlib.util, resource, sys
import numpy as np
spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])  # not torch's import
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
def cycle():  # feature maps of a few sizes, allocated, written and freed
    maps = [np.ones(n, np.float32) for n in (6_000_000, 3_000_000, 7_000_000)]
    del maps
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
def test_the_command_keeps_the_memory_it_frees():
    """Ten rounds of 64 MB of maps written and freed (156 000 pages) fault no page in again
    once the command has set the allocator up (the default faults thousands). Blocks over
    32 MB keep their own mappings: glibc allows no higher threshold."""

    def faults(mode: str) -> tuple[str, int]:
        run = subprocess.run(
            [sys.executable, "-c", FAULTS_AFTER_FREEING, mode, allocator.__file__],
            capture_output=True,
            text=True,
        )
        kept, count = run.stdout.split()
        return kept, int(count)

    kept, count = faults("keep")
    assert kept == "True" and count < 200
    assert faults("default")[1] > 1000
