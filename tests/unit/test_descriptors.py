"""The open-files limit against the connection caps, in a child process (a lowered hard limit cannot be
raised again, so the test process's own limits are left alone)."""

from __future__ import annotations

import subprocess
import sys

from sqlite_ha.server.descriptors import RESERVE, needed

CHILD = """
import logging, resource, sys
from sqlite_ha.server.descriptors import ensure_descriptors
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
soft, hard = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print("soft", ensure_descriptors(int(sys.argv[3])))
print("now", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def run(soft: int, hard: int, count: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard), str(count)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def test_needed_counts_each_cap_with_its_over_cap_answers() -> None:
    assert needed(500, 500) == RESERVE + 2 * (500 + 50)
    assert needed(5) == RESERVE + 5 + 16


def test_the_soft_limit_is_raised_as_far_as_needed() -> None:
    out = run(256, 4096, 1200)
    assert "soft 1200" in out
    assert "now 1200" in out
    assert "raised the open files limit from 256 to 1200" in out
    assert "WARNING" not in out


def test_a_warning_when_the_hard_limit_is_too_low() -> None:
    out = run(256, 512, 1200)
    assert "now 512" in out
    assert "WARNING the open files limit (512) is below what the connection caps need (1200)" in out


def test_a_limit_high_enough_is_left_alone() -> None:
    out = run(2048, 4096, 1200)
    assert "now 2048" in out
    assert "raised" not in out
