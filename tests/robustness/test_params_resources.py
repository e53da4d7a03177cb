"""Issue 9, items 8, 13, 15, 16 and 18: parameters, memory and deployment.

Non-finite or unbounded parameters are refused by their declaration, naming the
parameter; allocations beyond the available memory are refused before they happen, and
a MemoryError that still occurs becomes one line; the package imports and runs from a
read-only installation with an unwritable HOME.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge import _numba_cache, resources
from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError, RecoforgeError, ResourceError
from recoforge.models import ease as ease_module
from recoforge.models.params import SEED_MAX, _type_options
from recoforge.models.registry import model_class

REPO_SRC = Path(rf.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ratings() -> Dataset:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"user": rng.integers(0, 40, 500), "item": rng.integers(0, 25, 500),
                          "rating": rng.integers(1, 6, 500).astype(float)})
    return Dataset.from_frame(frame.drop_duplicates(["user", "item"]), rating_col="rating")


def _fields(name: str) -> list[tuple[dataclasses.Field, set[type]]]:
    config = model_class(name).Config
    hints = typing.get_type_hints(config)
    return [(f, _type_options(hints[f.name])[0]) for f in dataclasses.fields(config)]


# ----------------------------------------------------------------- declarations (8, 13, 15)
@pytest.mark.parametrize("name", rf.available_models())
def test_every_count_parameter_has_an_upper_bound(name):
    """Sizes, counts and iterations are bounded, so no value can run forever or allocate
    without limit (als n_factors=10**9, iterations=10**12)."""
    unbounded = [f.name for f, types in _fields(name)
                 if int in types and float not in types and not f.metadata.get("choices")
                 and f.metadata.get("le") is None and f.metadata.get("lt") is None]
    assert unbounded == [], f"{name}: integer parameters without an upper bound"


@pytest.mark.parametrize("name", rf.available_models())
def test_every_float_parameter_refuses_infinity(name):
    floats = [f for f, types in _fields(name)
              if float in types and not f.metadata.get("allow_inf")]
    for field in floats:
        for bad in (float("inf"), float("-inf"), float("nan")):
            with pytest.raises(ConfigError, match=field.name):
                rf.create(name, **{field.name: bad})


SEEDED = [name for name in rf.available_models()
          if "seed" in model_class(name).Config.field_names()]


def test_the_seeded_models_are_found():
    assert {"als", "bpr", "bpmf", "sgd_mf", "pure_svd"} <= set(SEEDED)


@pytest.mark.parametrize("name", SEEDED)
def test_seeds_are_bounded_and_named(name):
    for bad in (-1, SEED_MAX + 1, 2**64):
        with pytest.raises(ConfigError, match="seed must be"):
            rf.create(name, seed=bad)
    for text in ("-1", str(2**40)):  # as the CLI's --param seed=... gives them
        parsed = model_class(name).Config.from_strings({"seed": text})
        with pytest.raises(ConfigError, match="seed must be"):
            rf.create(name, **parsed)
    assert rf.create(name, seed=SEED_MAX).config.seed == SEED_MAX


@pytest.mark.parametrize("name,params,message", [
    ("popularity", {"damping": float("inf")}, "damping must be a finite number"),
    ("ease", {"regularization": float("inf")}, "regularization must be a finite number"),
    ("implicit_als", {"regularization": float("inf")}, "regularization must be a finite"),
    ("bpmf", {"noise_precision": float("inf")}, "noise_precision must be a finite number"),
    ("bpmf", {"beta0": float("inf")}, "beta0 must be a finite number"),
    ("bpr", {"regularization": float("inf")}, "regularization must be a finite number"),
    ("als", {"n_factors": 10**9}, "n_factors must be <= "),
    ("als", {"n_factors": 10**5}, "n_factors must be <= "),
    ("als", {"iterations": 10**12}, "iterations must be <= "),
    ("implicit_als", {"cg_steps": 10**9}, "cg_steps must be <= "),
    ("item_knn", {"k": 10**12}, "k must be <= "),
    ("covisitation", {"top_k": 10**12}, "top_k must be <= "),
    ("pure_svd", {"n_factors": 10**7}, "n_factors must be <= "),
    ("ease", {"max_memory_gb": float("inf")}, "max_memory_gb must be a finite number"),
])
def test_issue_cases_are_refused_by_the_declaration(name, params, message):
    with pytest.raises(ConfigError, match=message):
        rf.create(name, **params)


@pytest.mark.parametrize("name,params", [
    ("popularity", {"damping": 1e12, "measure": "rating"}),
    ("ease", {"regularization": 1e12}),
    ("als", {"regularization": 1e9, "n_factors": 4, "iterations": 2}),
    ("implicit_als", {"regularization": 1e9, "n_factors": 4, "iterations": 2}),
    ("bpmf", {"noise_precision": 1e12, "beta0": 1e12, "n_factors": 4, "n_samples": 3,
              "burn_in": 1}),
])
def test_largest_accepted_values_still_give_finite_lists(name, params, ratings):
    """The neighbours of the refused values: the bounds leave no value that fits but
    returns nothing."""
    model = rf.create(name, **params).fit(ratings)
    recs = model.recommend(list(ratings.user_index.ids[:3]), k=5)
    assert len(recs) == 15 and np.isfinite(recs["score"]).all()


def test_bpr_divergence_names_the_real_cause(ratings):
    model = rf.create("bpr", regularization=1000.0, learning_rate=10.0, n_epochs=2)
    with pytest.raises(ConfigError, match=r"learning_rate x regularization .* > 1.*"
                                          r"lower regularization"):
        model.fit(ratings)


def test_bpr_divergence_without_overshoot_blames_the_step_size():
    from recoforge.models.factors.bpr import divergence_message

    config = model_class("bpr").Config(learning_rate=5.0, regularization=0.01,
                                       init_scale=50.0)
    message = divergence_message("bpr", config)
    assert "lower learning_rate (now 5)" in message and "init_scale (now 50)" in message
    assert "regularization" not in message


# ----------------------------------------------------------------- memory (15, 18)
def test_available_memory_reads_meminfo_then_sysconf(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2000 kB\nMemAvailable:   1500 kB\n")
    assert resources.available_memory_bytes(meminfo) == 1500 * 1024
    meminfo.write_text("MemTotal: 2000 kB\nMemAvailable: lots\n")
    assert resources.meminfo_available(meminfo) is None
    absent = tmp_path / "absent"
    assert resources.meminfo_available(absent) is None
    assert resources.available_memory_bytes(absent) == resources.sysconf_available()


def test_check_allocation_refuses_in_one_line():
    resources.check_allocation(1000, "a small array", available=1000)
    with pytest.raises(ResourceError, match=r"^big matrix needs about 2\.0 GiB but only "
                                            r"1\.0 GiB is available; lower n$") as caught:
        resources.check_allocation(2 * 2**30, "big matrix", advice="lower n", available=2**30)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, RecoforgeError) and isinstance(caught.value, MemoryError)


def test_check_allocation_passes_when_memory_is_unknown(monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda meminfo=None: None)
    resources.check_allocation(1e30, "a petabyte array")  # cannot tell: not refused


@pytest.mark.parametrize("name,params,message", [
    ("als", {"n_factors": 64}, r"als with n_factors=64 .* needs about .*lower n_factors"),
    ("implicit_als", {"n_factors": 64}, r"implicit_als with n_factors=64"),
    ("bpr", {"n_factors": 64}, r"bpr factors .*lower n_factors"),
    ("sgd_mf", {"n_factors": 64}, r"sgd_mf factors .*lower n_factors"),
    ("bpmf", {"n_factors": 8}, r"bpmf with n_factors=8 .*lower stored_samples"),
    ("pure_svd", {"n_factors": 5}, r"pure_svd of rank 5"),
    ("item_knn", {"k": 10}, r"item_knn with k=10 .*lower k"),
    ("covisitation", {"top_k": 10}, r"covisitation with top_k=10 .*lower top_k"),
    ("p3alpha", {"top_k": 10}, r"p3alpha with top_k=10 .*lower top_k"),
])
def test_fits_check_memory_before_allocating(name, params, message, ratings, monkeypatch):
    monkeypatch.setattr(resources, "available_memory_bytes", lambda meminfo=None: 1024)
    model = rf.create(name, **params)
    with pytest.raises(ResourceError, match=message) as caught:
        model.fit(ratings)
    assert "\n" not in str(caught.value) and "is available" in str(caught.value)


def _guarded(error: BaseException) -> None:
    with resources.memory_guard("fitting x"):
        raise error


def _numba_style_memory_error() -> SystemError:
    """A SystemError caused by a MemoryError, as numba raises for failed allocations."""
    try:
        raise MemoryError("Allocation failed")
    except MemoryError as inner:
        error = SystemError("returned a result with an exception set")
        error.__cause__ = inner
        return error


def test_memory_guard_turns_memory_errors_into_one_line():
    with pytest.raises(ResourceError, match="^fitting x ran out of memory; "):
        _guarded(MemoryError())
    with pytest.raises(ResourceError, match="fitting x ran out of memory"):
        _guarded(_numba_style_memory_error())
    with pytest.raises(SystemError):  # a SystemError of another cause is not hidden
        _guarded(SystemError("something else"))
    with pytest.raises(KeyError):
        _guarded(KeyError("unrelated"))
    original = ResourceError("a precise refusal")
    with pytest.raises(ResourceError) as caught:
        _guarded(original)
    assert caught.value is original


def test_fit_reports_a_memory_error_inside_a_model(ratings, monkeypatch):
    from recoforge.models import als as als_module

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 149. GiB")

    monkeypatch.setattr(als_module, "_solve_cholesky", exhausted)
    with pytest.raises(ResourceError, match=r"^fitting als ran out of memory"):
        rf.create("als", n_factors=4, iterations=1).fit(ratings)


def _ease_refusal(ratings, monkeypatch, tmp_path, available_kib: int, **params) -> str:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal: 1 kB\nMemAvailable: {available_kib} kB\n")
    monkeypatch.setattr(ease_module, "MEMINFO", meminfo)
    with pytest.raises(ResourceError) as caught:
        rf.create("ease", **params).fit(ratings)
    return str(caught.value)


def test_ease_refusal_suggests_only_what_helps(ratings, monkeypatch, tmp_path):
    default = _ease_refusal(ratings, monkeypatch, tmp_path, 1)
    assert "precision" not in default  # float32 is already the default
    assert "max_memory_gb" not in default  # the machine has not got the memory
    assert "item_knn" in default and "fewer items" in default
    wide = _ease_refusal(ratings, monkeypatch, tmp_path, 1, precision="float64")
    assert "precision='float32'" in wide


def test_ease_budget_above_the_machine_is_not_trusted(ratings, monkeypatch, tmp_path):
    """max_memory_gb lowers the budget, it never raises it past the available memory."""
    message = _ease_refusal(ratings, monkeypatch, tmp_path, 1, max_memory_gb=500.0)
    assert "is available" in message and "raise max_memory_gb" not in message


def test_ease_budget_below_the_machine_suggests_raising_it(ratings, monkeypatch, tmp_path):
    message = _ease_refusal(ratings, monkeypatch, tmp_path, 10**8, max_memory_gb=1e-6)
    assert "allowed by max_memory_gb=1e-06" in message
    assert "raise max_memory_gb (the machine has" in message


# ----------------------------------------------------------------- deployment (16)
def test_cache_decision_keeps_a_working_numba_default(tmp_path):
    writable = tmp_path / "pkg"
    blocked = tmp_path / "file"
    blocked.write_text("a file, so no directory can be made under it")

    def never():  # neither numba's user directory nor our fallbacks are needed here
        raise AssertionError("consulted although numba's default works")

    assert _numba_cache.choose_cache_dir(None, [writable], never, never) == ("keep", None)
    assert (writable / "__pycache__").is_dir()
    assert _numba_cache.choose_cache_dir(str(tmp_path / "mine"), [blocked / "x"],
                                         never, never) == ("keep", None)
    assert _numba_cache.choose_cache_dir(None, [blocked / "x"], lambda: tmp_path / "user",
                                         never) == ("keep", None)


def test_cache_decision_falls_back_to_a_writable_dir_or_none(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    user, bad = blocked / "user", blocked / "cand"
    good = tmp_path / "fallback"
    assert _numba_cache.choose_cache_dir(str(blocked / "set"), [blocked / "pkg"],
                                         lambda: user, lambda: [bad, good]) == ("set", good)
    assert good.is_dir()
    assert _numba_cache.choose_cache_dir(None, [blocked / "pkg"], lambda: user,
                                         lambda: [bad]) == ("none", None)


def test_fallback_dirs_follow_xdg_then_home_then_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    found = _numba_cache.fallback_dirs()
    assert found[:2] == [tmp_path / "xdg" / "recoforge" / "numba",
                         tmp_path / "home" / ".cache" / "recoforge" / "numba"]
    assert found[2].name.startswith("recoforge-numba-")


def _as_nobody(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``code`` as user nobody (uid 65534), in ``/``, with this interpreter."""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         "-c", code], env=env, cwd="/", capture_output=True, text=True, timeout=300)


SMOKE = textwrap.dedent("""
    {prelude}
    import os
    import pandas as pd
    import recoforge as rf
    from recoforge import _numba_cache
    from recoforge.data.dataset import Dataset
    frame = pd.DataFrame({{"user": [0, 0, 1, 1, 2, 2], "item": [0, 1, 1, 2, 3, 4]}})
    model = rf.create("popularity").fit(Dataset.from_frame(frame))
    print(_numba_cache.DECISION, len(model.recommend([0, 1], k=2)))
""")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0
                    or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run as another user")
@pytest.mark.parametrize("prelude,decision", [
    ("", "set"),  # a writable temp dir: the cache moves there
    ("import tempfile; tempfile.tempdir = '/proc'", "none"),  # nothing writable at all
])
def test_imports_and_runs_as_another_user_from_a_read_only_install(prelude, decision):
    """The issue's deployment: recoforge's files not writable by the user, HOME not
    writable, no NUMBA_CACHE_DIR. (Needs the source tree readable by others.)"""
    for parent in [REPO_SRC, *REPO_SRC.parents]:
        if not os.stat(parent).st_mode & 0o005:
            pytest.skip(f"{parent} is not readable by other users")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    env.update(HOME="/nonexistent", PYTHONPATH=str(REPO_SRC), PYTHONDONTWRITEBYTECODE="1")
    done = _as_nobody(SMOKE.format(prelude=prelude), env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [decision, "4"]
