"""Overwrite never loses data; replacement is atomic; concurrent writers and readers."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

import recoforge as rf
from recoforge.artifacts import load_model, save_model, storage
from recoforge.errors import ArtifactError
from tests.conformance.specs import taste_data


@pytest.fixture(scope="module")
def models():
    train = taste_data(seed=2)[0]
    return [rf.create("popularity", damping=d).fit(train) for d in (1.0, 2.0)]


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".recoforge-" in p.name
                  and not p.name.endswith("-lock"))


def _dead_pid() -> int:
    process = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    process.start()
    process.join()
    return process.pid


def test_overwrite_refuses_what_is_not_a_model(models, tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "ratings.csv").write_text("user,item\n1,2\n")
    (project / "notes.md").write_text("notes")
    for target in (project, tmp_path):
        with pytest.raises(ArtifactError, match="not a recoforge model directory"):
            save_model(models[0], target, overwrite=True)
    assert sorted(p.name for p in project.iterdir()) == ["notes.md", "ratings.csv"]
    with pytest.raises(ArtifactError, match="not a directory"):
        save_model(models[0], project / "notes.md", overwrite=True)
    assert (project / "notes.md").read_text() == "notes"
    save_model(models[0], tmp_path / "model")
    (tmp_path / "link").symlink_to(tmp_path / "model")
    with pytest.raises(ArtifactError, match="symbolic link"):
        save_model(models[1], tmp_path / "link", overwrite=True)
    (tmp_path / "model" / "mine.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="mine.txt"):
        save_model(models[1], tmp_path / "model", overwrite=True)
    assert (tmp_path / "model" / "mine.txt").read_text() == "keep me"
    assert load_model(tmp_path / "model").config.damping == 1.0
    assert _leftovers(tmp_path) == []


def test_overwrite_rules_for_models_and_empty_directories(models, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    save_model(models[0], tmp_path / "empty")  # an empty directory holds nothing to lose
    with pytest.raises(ArtifactError, match="exists; pass overwrite=True"):
        save_model(models[1], tmp_path / "empty")
    save_model(models[1], tmp_path / "empty", overwrite=True)
    assert load_model(tmp_path / "empty").config.damping == 2.0
    save_model(models[0], tmp_path / "a" / "b" / "c")  # parents are created
    assert load_model(tmp_path / "a" / "b" / "c").config.damping == 1.0
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="cannot create"):
        save_model(models[0], tmp_path / "file" / "model")
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_old_model(models, tmp_path: Path):
    save_model(models[0], tmp_path / "m")
    broken = models[1]
    broken.junk_ = object()
    try:
        with pytest.raises(ArtifactError, match="junk_"):
            save_model(broken, tmp_path / "m", overwrite=True)
    finally:
        del broken.junk_
    assert load_model(tmp_path / "m").config.damping == 1.0
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_replace_swaps_complete_models(models, tmp_path: Path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(storage, "_exchange", lambda a, b: False)
    save_model(models[0], tmp_path / "m")
    save_model(models[1], tmp_path / "m", overwrite=True)
    assert load_model(tmp_path / "m").config.damping == 2.0
    assert _leftovers(tmp_path) == []


def test_stale_temporaries_are_cleaned_and_others_kept(models, tmp_path: Path):
    dead = _dead_pid()
    stale = tmp_path / f".m.recoforge-tmp-{dead}-0badc0de"
    stale.mkdir()
    (stale / "arrays.npz").write_bytes(b"partial")
    live = tmp_path / f".m.recoforge-tmp-{os.getppid()}-0badc0de"
    live.mkdir()
    other = tmp_path / f".m.recoforge-tmp-{dead}-notours"
    other.mkdir()
    old = tmp_path / f".m.recoforge-tmp-{os.getppid()}-00000001"
    old.mkdir()
    os.utime(old, (time.time() - storage.STALE_SECONDS - 60,) * 2)
    save_model(models[0], tmp_path / "m")
    assert not stale.exists() and not old.exists()
    assert live.exists() and other.exists()


def test_old_model_stranded_aside_is_put_back(models, tmp_path: Path):
    save_model(models[0], tmp_path / "m")
    aside = tmp_path / f".m.recoforge-old-{_dead_pid()}-0badc0de"
    os.rename(tmp_path / "m", aside)  # a writer killed between its two renames
    with pytest.raises(ArtifactError, match="exists"):
        save_model(models[1], tmp_path / "m")
    assert load_model(tmp_path / "m").config.damping == 1.0
    assert not aside.exists()


def _writer(path: str, model, rounds: int, exchange: bool, errors) -> None:
    if not exchange:
        storage._exchange = lambda a, b: False
    for _ in range(rounds):
        try:
            save_model(model, path, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.put(f"writer: {type(exc).__name__}: {exc}")


def _reader(path: str, stop, errors, loads) -> None:
    count = 0
    while not stop.is_set():
        try:
            model = load_model(path)
            assert model.config.damping in (1.0, 2.0)
            count += 1
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.put(f"reader: {type(exc).__name__}: {exc}")
    loads.put(count)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_concurrent_writers_and_a_reader(models, tmp_path: Path, exchange):
    path = str(tmp_path / "m")
    save_model(models[0], path)
    ctx = multiprocessing.get_context("fork")
    errors, loads, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    writers = [ctx.Process(target=_writer, args=(path, m, 12, exchange, errors))
               for m in models]
    reader = ctx.Process(target=_reader, args=(path, stop, errors, loads))
    reader.start()
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
    stop.set()
    reader.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert loads.get(timeout=5) > 0
    assert load_model(path).config.damping in (1.0, 2.0)
    assert _leftovers(tmp_path) == []
