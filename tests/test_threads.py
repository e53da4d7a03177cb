"""The one thread setting: numba (thread-local, per block), BLAS and torch (set once)."""

from __future__ import annotations

import threading

import numba
import pytest

from recoforge import threads
from recoforge.errors import ConfigError


@pytest.fixture(autouse=True)
def fresh_setting(monkeypatch):
    monkeypatch.setattr(threads, "_setting", [])
    yield
    threads._setting.clear()


def test_set_get_and_resolve():
    assert threads.set_num_threads(1) == 1 == threads.get_num_threads()
    assert threads.resolve(0) == 1
    assert threads.resolve(10_000) == threads.max_threads()
    assert threads.set_num_threads(0) == threads.max_threads()
    assert threads.set_num_threads(None) == threads.max_threads()


@pytest.mark.parametrize("bad", [-1, "two", 1.5, True])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="threads"):
        threads.set_num_threads(bad)


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(threads.ENV_VAR, "1")
    assert threads.get_num_threads() == 1
    threads._setting.clear()
    monkeypatch.setenv(threads.ENV_VAR, "lots")
    with pytest.raises(ConfigError, match=threads.ENV_VAR):
        threads.get_num_threads()


def test_blas_pools_follow_the_setting():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    threads.set_num_threads(1)
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
    threads.set_num_threads(0)


def test_numba_block_is_thread_local_and_restored():
    before = numba.get_num_threads()
    seen_elsewhere = []
    with threads.numba_threads(1) as used:
        assert used == 1 and numba.get_num_threads() == 1
        other = threading.Thread(target=lambda: seen_elsewhere.append(numba.get_num_threads()))
        other.start()
        other.join()
    assert numba.get_num_threads() == before
    assert seen_elsewhere == [numba.config.NUMBA_NUM_THREADS]
    with pytest.raises(RuntimeError), threads.numba_threads(1):
        raise RuntimeError("boom")
    assert numba.get_num_threads() == before
