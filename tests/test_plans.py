"""Query plans: the two-point estimators retrace the trajectories recorded before plans existed."""

import json

import pytest

from trajectories import PATH, cases, record

RECORDED = json.loads(PATH.read_text())


@pytest.mark.parametrize("label,name,dtype,options", list(cases()), ids=[c[0] for c in cases()])
def test_two_point_estimators_retrace_the_recorded_trajectories_bit_for_bit(label, name, dtype, options):
    assert record(name, dtype, options) == RECORDED[label]
