import math

import pytest

from predictor.engine.interval import Interval


def test_interval_arithmetic():
    a = Interval(2.0, 1.0, 4.0)
    b = Interval.ratio(10.0, 2.0)
    assert (b.low, b.high) == (5.0, 20.0)
    s = a + b
    assert (s.value, s.low, s.high) == (12.0, 6.0, 24.0)
    assert a.scaled(3).to_dict() == {"value": 6.0, "low": 3.0, "high": 12.0, "level": 0.9}
    assert Interval.exact(5.0).width_ratio == 1.0
    assert b.contains(19.9) and not b.contains(20.1)


@pytest.mark.parametrize("args", [(1.0, 2.0, 3.0), (5.0, 1.0, 4.0), (1.0, 0.5, 2.0, 0.0),
                                  (1.0, math.nan, 2.0)])
def test_interval_refuses_inconsistent_ends(args):
    with pytest.raises(ValueError):
        Interval(*args)


def test_interval_refuses_bad_factors():
    with pytest.raises(ValueError):
        Interval.ratio(1.0, 0.5)
    with pytest.raises(ValueError):
        Interval(1.0, 0.5, 2.0).scaled(-1)
