"""settle_heap, in a process of its own: it changes the collector for the whole process."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json
from configtable import settle_heap
before = gc.get_freeze_count()
settle_heap()
print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))
"""


def test_the_started_heap_is_frozen_and_young_collections_wait_longer() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    before, frozen, threshold = json.loads(out.stdout)
    assert before == 0 and frozen > 1000  # the modules, classes and functions of start-up
    assert threshold == [50_000, 20, 10]
