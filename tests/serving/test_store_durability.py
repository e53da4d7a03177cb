"""Acknowledged writes survive ``kill -9``: a writer process prints an acknowledgement
after each committed batch and is killed with SIGKILL mid-stream; every acknowledged
event must then be in the database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("sqlalchemy")

from recoforge.serving import schema  # noqa: E402
from recoforge.serving.store import Store  # noqa: E402

WRITER = """
import sys
from recoforge.serving.store import Event, Store
store = Store.open(sys.argv[1])
for batch in range(1_000_000):
    events = [Event("u%d" % (batch % 7), "i%d-%d" % (batch, k), "click", 1.0, float(batch))
              for k in range(3)]
    store.insert_events(events, idempotency_key="batch-%d" % batch)
    print("ack", batch, flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_acknowledged_events_survive_sigkill(store_url):
    Store.open(store_url).close()  # schema first, so the writer starts writing at once
    writer = subprocess.Popen([sys.executable, "-c", WRITER, store_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    acknowledged = []
    assert writer.stdout is not None
    for line in writer.stdout:
        acknowledged.append(int(line.split()[1]))
        if len(acknowledged) == 150:
            writer.send_signal(signal.SIGKILL)  # right after reading an acknowledgement
            break
    writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL, writer.stderr.read() if writer.stderr else ""
    with Store.open(store_url) as store:
        stored = set(store.events_frame()["item"])
        assert store.count_events() >= 3 * len(acknowledged)
    missing = [batch for batch in acknowledged
               if not {f"i{batch}-{k}" for k in range(3)} <= stored]
    assert not missing, f"acknowledged batches lost: {missing[:10]}"
    assert acknowledged == list(range(len(acknowledged)))


CONCURRENT_WRITER = """
import sys
from recoforge.serving.store import Event, Store
with Store.open(sys.argv[1]) as store:
    for i in range(30):
        store.insert_events([Event("w" + sys.argv[2], "i%d" % i)])
print("done")
"""


def test_processes_creating_and_writing_one_database_at_once(store_url):
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, store_url, str(w)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for w in range(2)]
    outputs = [writer.communicate(timeout=120) for writer in writers]
    assert all(out.strip() == "done" for out, _ in outputs), [err for _, err in outputs]
    with Store.open(store_url) as store:
        assert store.count_events() == 60
        assert store.schema_version == schema.SCHEMA_VERSION and len(store.list_users()) == 2
