"""Weights by name: fetched once into the cache and checked, resumed after a dropped
connection, downloaded once by two processes, refused when the hash differs, one line when
offline; a name works wherever a model is taken. Every byte comes from a server on
127.0.0.1 that the tests fill."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fcnxs.core.errors import FcnxsError
from fcnxs.hub import fetch
from fcnxs.hub.registry import BUILT_IN, Entry
from helpers import FileServer

DATA = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()


@pytest.fixture
def server():
    served = FileServer()
    yield served
    served.close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FCNXS_HOME", str(home))
    monkeypatch.delenv("FCNXS_MIRROR", raising=False)
    monkeypatch.delenv("FCNXS_OFFLINE", raising=False)
    return home


def _entry(server, name="blob", data=DATA, hash="sha256") -> Entry:
    server.files[f"/files/{name}.bin"] = data
    digest = None if hash is None else f"sha256:{hashlib.sha256(data).hexdigest()}"
    return Entry(name, f"{server.url}/files/{name}.bin", "a test file", "dataset", hash=digest)


def _cached_files(home) -> list[str]:
    return sorted(p.name for p in home.rglob("*") if p.is_file() and p.parent.name != "locks")


def test_a_file_is_fetched_once_then_read_with_no_request(server, cache):
    entry = _entry(server)
    path = fetch.fetch(entry)
    assert path.read_bytes() == DATA and path.parent.parent == cache / "downloads"
    assert fetch.fetch(entry) == path
    assert len(server.requests) == 1


def test_a_dropped_connection_resumes_with_a_range_request(server):
    entry = _entry(server)
    server.drop_after["/files/blob.bin"] = 1 << 20
    assert fetch.fetch(entry).read_bytes() == DATA
    assert server.requests == [("/files/blob.bin", None), ("/files/blob.bin", "bytes=1048576-")]


def test_a_different_hash_is_refused_and_nothing_is_kept(server, cache):
    entry = _entry(server)
    server.files["/files/blob.bin"] = DATA[:-1] + b"x"
    with pytest.raises(FcnxsError, match=r"blob: .*/files/blob.bin is not the published file"):
        fetch.fetch(entry)
    assert _cached_files(cache) == []


def test_a_wrong_sha256_prefix_is_refused_too(server, cache):
    entry = Entry("tv", f"{server.url}/files/tv.bin", "torchvision-like", "vgg16",
                  hash="sha256-prefix:00000000")  # fmt: skip
    server.files["/files/tv.bin"] = DATA
    with pytest.raises(FcnxsError, match=r"does not start with 00000000\); nothing was kept"):
        fetch.fetch(entry)
    assert _cached_files(cache) == []


def test_offline_is_one_line_naming_the_url_the_cache_and_the_way_round(server, monkeypatch):
    entry = _entry(server)
    monkeypatch.setenv("FCNXS_OFFLINE", "1")
    with pytest.raises(FcnxsError) as error:
        fetch.fetch(entry)
    message = str(error.value)
    assert "\n" not in message and entry.url in message
    assert str(fetch.downloaded(entry)) in message and "--from FILE" in message
    assert server.requests == []


def test_no_network_is_one_line_with_the_mirror_and_the_way_round(cache):
    entry = Entry("gone", "http://127.0.0.1:9/nothing.bin", "unreachable", "dataset")
    with pytest.raises(FcnxsError) as error:
        fetch.fetch(entry)
    message = str(error.value)
    assert "\n" not in message and "cannot download http://127.0.0.1:9/nothing.bin" in message
    assert "FCNXS_MIRROR" in message and "--from FILE" in message
    assert _cached_files(cache) == []


def test_a_mirror_replaces_every_entrys_host(server, monkeypatch):
    entry = Entry("far", "http://127.0.0.1:9/files/far.bin", "a closed port", "dataset")
    server.files["/files/far.bin"] = DATA
    monkeypatch.setenv("FCNXS_MIRROR", server.url + "/")
    assert fetch.fetch(entry).read_bytes() == DATA
    assert server.requests == [("/files/far.bin", None)]


def test_a_file_obtained_by_hand_is_checked_as_a_download(server, tmp_path, cache):
    entry = _entry(server)
    wrong, right = tmp_path / "wrong.bin", tmp_path / "right.bin"
    wrong.write_bytes(b"not it")
    right.write_bytes(DATA)
    with pytest.raises(FcnxsError, match=r"wrong\.bin is not the published file"):
        fetch.fetch(entry, copy_from=wrong)
    assert _cached_files(cache) == []
    assert fetch.fetch(entry, copy_from=right).read_bytes() == DATA
    assert server.requests == []


@pytest.mark.slow  # child processes
def test_two_processes_fetching_one_name_download_it_once(server, cache):
    entry = _entry(server)
    server.delay = 0.01  # 48 chunks: half a second, long enough for both to ask
    script = (
        "import sys; from fcnxs.hub import fetch; from fcnxs.hub.registry import Entry; "
        "e = Entry('blob', sys.argv[1], 'a test file', 'dataset', hash=sys.argv[2]); "
        "print(fetch.fetch(e).stat().st_size)"
    )
    command = [sys.executable, "-c", script, entry.url, entry.hash]
    env = dict(os.environ, FCNXS_HOME=str(cache))
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, env=env) for _ in range(2)]
    sizes = [int(run.communicate()[0]) for run in runs]
    assert sizes == [len(DATA)] * 2
    assert [path for path, _ in server.requests] == ["/files/blob.bin"]


def test_the_registry_holds_the_tutorials_files():
    assert BUILT_IN["vgg16-imagenet"].file_name == "vgg16-397923af.pth"
    assert BUILT_IN["vgg16-imagenet"].hash == "sha256-prefix:397923af"
    assert BUILT_IN["vgg16-caffe"].size == 553_432_081
    assert "non-commercial" in BUILT_IN["vgg16-caffe"].licence
    assert BUILT_IN["fcn8s-voc"].hash == "sha1:c449ea74dd7d83751d1357d6a8c323fcf4038962"
    assert BUILT_IN["voc2012"].hash == "md5:6cd6e144f989b92b3379bac3b3de84fd"
    assert BUILT_IN["sbd"].hash == "md5:82b4d87ceb2ed10f6038a1cba92111cb"
    assert BUILT_IN["sbd"].extra[0][2] == "md5:79bff800c5f0b1ec6b21080a3c066722"


@pytest.mark.slow
def test_a_name_added_by_the_user_works_as_a_path_does(server, cli, model_file, tmp_path, cache):
    """``models add`` + ``segment --model NAME``: the labels of the same file by path; the
    second run makes no request."""
    with open(model_file, "rb") as f:
        server.files["/team/fcn8s.safetensors"] = f.read()
    status, out, _ = cli("models", "add", "team-fcn8s", f"{server.url}/team/fcn8s.safetensors")
    assert status == 0 and "team-fcn8s" in out
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3), np.uint8)).save(
        tmp_path / "photo.png"
    )
    for model, out_dir in [
        (model_file, "by-path"),
        ("team-fcn8s", "by-name"),
        ("team-fcn8s", "again"),
    ]:
        status, _, err = cli(
            "segment", tmp_path / "photo.png", "--model", model, "-o", tmp_path / out_dir
        )
        assert status == 0, err
    assert len(server.requests) == 1
    by_path = np.asarray(Image.open(tmp_path / "by-path" / "photo.png"))
    assert np.array_equal(by_path, np.asarray(Image.open(tmp_path / "by-name" / "photo.png")))
    assert cli("models", "path", "team-fcn8s")[1].strip().endswith("fcn8s.safetensors")
    from fcnxs.inference.segmenter import Segmenter

    rgb = np.asarray(Image.open(tmp_path / "photo.png"))
    assert np.array_equal(Segmenter("team-fcn8s").labels(rgb), by_path)  # in Python too
    status, out, _ = cli("models", "remove", "team-fcn8s")
    assert status == 0 and "its entry" in out and _cached_files(cache) == ["registry.json"]


@pytest.mark.slow
def test_a_builtin_name_through_a_mirror_in_one_command(server, cli, tmp_path, cache, monkeypatch):
    """``segment --model fcn32s-voc`` with FCNXS_MIRROR: fetched, converted once to the bytes
    ``fcnxs convert`` writes for that file, where it went printed; a second run makes no
    request. A file whose published hash differs (fcn8s-voc) is refused in one line."""
    from writers import caffe_layers_from_state, write_caffemodel

    import fcnxs

    model = fcnxs.build_model("fcn32s", num_classes=21, seed=4)
    caffemodel = tmp_path / "fcn32s-heavy-pascal.caffemodel"
    write_caffemodel(caffemodel, caffe_layers_from_state(model.state_dict(), "fcn32s"))
    for name in ("fcn32s-heavy-pascal.caffemodel", "fcn8s-heavy-pascal.caffemodel"):
        server.files[f"/{name}"] = caffemodel.read_bytes()
    monkeypatch.setenv("FCNXS_MIRROR", server.url)
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "photo.png")
    argv = ["segment", tmp_path / "photo.png", "--model", "fcn32s-voc"]
    status, out, err = cli(*argv, "-o", tmp_path / "one")
    assert status == 0, err
    raw = fetch.downloaded(BUILT_IN["fcn32s-voc"])
    native = cache / "models" / "fcn32s-voc.safetensors"
    assert f"saved as {raw}" in out and f"converted to {native}" in out
    assert cli("convert", raw, "-o", tmp_path / "by-hand.safetensors")[0] == 0
    assert native.read_bytes() == (tmp_path / "by-hand.safetensors").read_bytes()
    assert cli(*argv, "-o", tmp_path / "two")[0] == 0
    assert len(server.requests) == 1
    status, _, err = cli("models", "fetch", "fcn8s-voc")
    assert status == 2 and len(err) == 1 and "is not the published file" in err[0]
    assert not list((cache / "downloads" / "fcn8s-voc").iterdir())


def _tar(path, members: dict[str, bytes], links: dict[str, str] | None = None):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _serve_dataset(server, monkeypatch, archive, name="voc2012", extra=None):
    """A built-in dataset entry, its archive (and extra file) served by the mirror, its md5s
    these files'."""
    import dataclasses
    from urllib.parse import urlsplit

    from fcnxs.hub import registry

    def published(url: str, data: bytes) -> str:
        server.files[urlsplit(url).path] = data
        return f"md5:{hashlib.md5(data).hexdigest()}"

    entry = BUILT_IN[name]
    changes = {"hash": published(entry.url, archive.read_bytes())}
    if extra is not None:
        ((file, url, _),) = entry.extra
        changes["extra"] = ((file, url, published(url, extra)),)
    monkeypatch.setitem(registry.BUILT_IN, name, dataclasses.replace(entry, **changes))
    monkeypatch.setenv("FCNXS_MIRROR", server.url)


def test_data_fetch_unpacks_a_dataset_ready_for_training(server, cli, tmp_path, monkeypatch):
    import tarfile

    from fcnxs.data.synth import write_synthetic_voc

    root = write_synthetic_voc(tmp_path / "made", 4, height=32, width=40, val_fraction=0.5)
    archive = tmp_path / "voc.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="VOCdevkit/VOC2012")
    _serve_dataset(server, monkeypatch, archive)
    status, out, err = cli("data", "fetch", "voc2012", "-o", tmp_path / "data")
    assert status == 0, err
    assert f"voc2012: {tmp_path / 'data' / 'voc2012'}" in out
    assert (tmp_path / "data" / "voc2012" / "JPEGImages").is_dir()
    assert cli("data", "check", tmp_path / "data" / "voc2012", "--split", "train")[0] == 0
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("members", "links", "problem"),
    [
        ({"VOCdevkit/VOC2012/../../x": b"out"}, None, "would land outside the folder"),
        ({"/etc/x": b"abs"}, None, "would land outside the folder"),
        ({"VOCdevkit/VOC2012/a": b"a"}, {"VOCdevkit/VOC2012/l": "/etc/passwd"}, "is a link"),
    ],
    ids=["dot-dot", "absolute", "link"],
)
def test_an_unsafe_archive_is_refused_before_anything_is_written(
    server, cli, tmp_path, monkeypatch, members, links, problem
):
    _serve_dataset(server, monkeypatch, _tar(tmp_path / "bad.tgz", members, links))
    status, _, err = cli("data", "fetch", "voc2012", "-o", tmp_path / "data")
    assert status == 2 and len(err) == 1 and problem in err[0]
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())
    assert not (tmp_path / "x").exists()


def test_a_broken_archive_leaves_no_half_extracted_folder(server, cli, tmp_path, monkeypatch):
    members = {f"VOCdevkit/VOC2012/f{i}": DATA[i << 16 : (i + 1) << 16] for i in range(9)}
    whole = _tar(tmp_path / "whole.tgz", members).read_bytes()
    (tmp_path / "cut.tgz").write_bytes(whole[: len(whole) // 2])  # a download cut short
    _serve_dataset(server, monkeypatch, tmp_path / "cut.tgz")
    status, _, err = cli("data", "fetch", "voc2012", "-o", tmp_path / "data")
    assert status == 2 and "not a readable archive" in err[0]
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())


@pytest.mark.slow
def test_voc2012_and_sbd_together_give_the_fcn_authors_split(server, cli, tmp_path, monkeypatch):
    """Both fetched into one folder: train.lst lists SBD's train_noval, val.lst VOC 2012's
    val, and the tutorial's list layout reads them."""
    import tarfile

    import scipy.io

    from fcnxs.data.synth import write_synthetic_voc

    voc = write_synthetic_voc(tmp_path / "made", 4, height=32, width=40, val_fraction=0.5)
    with tarfile.open(tmp_path / "voc.tar", "w") as tar:
        tar.add(voc, arcname="VOCdevkit/VOC2012")
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    (sbd / "img").mkdir(parents=True)
    (sbd / "cls").mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(sbd / "img" / f"s{i}.jpg")
        label = np.zeros((20, 24), np.uint8)
        label[5:9, 6:12] = i + 1
        scipy.io.savemat(sbd / "cls" / f"s{i}.mat", {"GTcls": {"Segmentation": label}})
    (sbd / "train.txt").write_text("s0\ns1\ns2\n")
    with tarfile.open(tmp_path / "sbd.tgz", "w:gz") as tar:
        tar.add(sbd.parent, arcname="benchmark_RELEASE")
    _serve_dataset(server, monkeypatch, tmp_path / "voc.tar")
    _serve_dataset(server, monkeypatch, tmp_path / "sbd.tgz", "sbd", extra=b"s0\ns2\n")
    status, out, err = cli("data", "fetch", "voc2012", "sbd", "-o", tmp_path / "data")
    assert status == 0, err
    data = tmp_path / "data"
    assert (data / "sbd" / "train_noval.txt").read_text() == "s0\ns2\n"
    train = (data / "train.lst").read_text().splitlines()
    assert train == ["0\tsbd/img/s0.jpg\tsbd/cls/s0.mat", "1\tsbd/img/s2.jpg\tsbd/cls/s2.mat"]
    assert len((data / "val.lst").read_text().splitlines()) == 2
    assert "--list train.lst --val-list val.lst" in out
    assert cli("data", "check", "--data", data, "--list", data / "train.lst")[0] == 0


def test_a_name_that_is_neither_a_file_nor_registered_says_so(cli, tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "photo.png")
    status, _, err = cli("segment", tmp_path / "photo.png", "--model", "fcn8s-vocc",
                         "-o", tmp_path / "out")  # fmt: skip
    assert status == 2 and len(err) == 1
    assert "fcn8s-vocc: no such file" in err[0] and "fcnxs models list" in err[0]


def test_an_address_fcnxs_cannot_fetch_is_one_line_before_any_request(cli, cache):
    status, _, err = cli("models", "add", "mine", "ftp://127.0.0.1/m.safetensors")
    assert status == 2 and len(err) == 1
    assert "ftp://127.0.0.1/m.safetensors: not an http or https address" in err[0]
    assert not (cache / "registry.json").exists()
    entry = Entry("odd", "file:///etc/hostname", "not a download", "dataset")
    with pytest.raises(FcnxsError, match="not an http or https address"):
        fetch.fetch(entry)
    assert _cached_files(cache) == []
