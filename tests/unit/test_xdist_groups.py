"""The suite's xdist work units really are in force (tests/conftest.py).

Stop 27's CI failed because pytest 9 stores a node id where pytest-xdist 3.8 no longer writes
its group suffix: the ``xdist_group`` marks were ignored, tests/postgis ran on two workers and
each dropped the other's ``demo_in`` schema. These tests fail if the groups are ignored again.
"""

from __future__ import annotations

import os

import pytest


@pytest.mark.skipif("PYTEST_XDIST_WORKER" not in os.environ, reason="runs under pytest-xdist only")
def test_this_module_is_one_xdist_work_unit(request):
    """Under ``--dist loadgroup`` xdist schedules by the suffix ``@<group>`` of each node id."""
    assert request.node.nodeid.endswith("@tests/unit/test_xdist_groups.py"), request.node.nodeid


def test_postgis_tests_share_one_group(request):
    """Every test in tests/postgis carries the one group ``postgis``; other modules their path."""
    session = request.session
    groups = {}
    for item in session.items:
        marks = [m.args[0] for m in item.iter_markers("xdist_group")]
        assert len(marks) == 1, item.nodeid
        groups.setdefault(item.path.parent.name == "postgis", set()).add(marks[0])
    assert groups.get(True, {"postgis"}) == {"postgis"}
    assert "postgis" not in groups.get(False, set())
