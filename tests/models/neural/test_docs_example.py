"""The model-writing example of docs/neural.md runs as printed, and its model learns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

DOC = Path(__file__).resolve().parents[3] / "docs" / "neural.md"


def test_the_writing_a_model_example_runs_and_beats_popularity(tmp_path):
    text = DOC.read_text()
    section = text.split("## Writing a neural model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "RECOFORGE_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    ndcg = {line.split()[0]: float(line.split()[1]) for line in lines[:2]}
    assert ndcg["dot_bpr"] > 2 * ndcg["popularity"]  # it learned the users' categories
    assert sum("newcomer" in line for line in lines) == 5  # five items for the new user
    assert (tmp_path / "dot_bpr_model" / "manifest.json").exists()
