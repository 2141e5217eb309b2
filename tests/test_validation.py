"""The option checks shared by the command line and the Python API."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sslzoo.errors import SslzooError
from sslzoo.validation import InvalidOptionError, all_positive, int_at_least, ints_at_least, positive


@given(value=st.integers(-10**6, 10**6), minimum=st.integers(-5, 5))
def test_int_at_least_accepts_exactly_the_allowed_integers(value, minimum):
    if value >= minimum:
        assert int_at_least("batch_size", value, minimum) == value
    else:
        with pytest.raises(InvalidOptionError) as e:
            int_at_least("batch_size", value, minimum)
        assert str(e.value) == f"batch_size (--batch-size) must be at least {minimum}, got {value}."


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_positive_accepts_exactly_finite_numbers_above_zero(value):
    if value > 0 and math.isfinite(value):
        assert positive("temperature", value) == value
    else:
        with pytest.raises(InvalidOptionError, match=r"^temperature \(--temperature\) must be a finite number"):
            positive("temperature", value)


def test_kinds_flags_and_lists():
    assert int_at_least("k", None) is None and positive("lr", None) is None  # "not given" passes
    assert int_at_least("k", np.int64(3)) == 3 and positive("lr", np.float32(0.5)) == 0.5
    for bad in (True, 2.5, "3"):
        with pytest.raises(InvalidOptionError, match="whole number"):
            int_at_least("k", bad)
    with pytest.raises(InvalidOptionError, match=r"^optim.base_lr \(--lr\) must"):
        positive("optim.base_lr", -1.0, flag="--lr")
    assert ints_at_least("k", [10, 20]) == (10, 20) and all_positive("lrs", [0.1]) == (0.1,)
    with pytest.raises(InvalidOptionError, match="needs at least one value"):
        ints_at_least("k", [])
    with pytest.raises(InvalidOptionError, match="got 0"):
        ints_at_least("k", [20, 0])
    # a user error (SslzooError: exit status 2 on the command line) and a ValueError for Python callers
    assert issubclass(InvalidOptionError, SslzooError) and issubclass(InvalidOptionError, ValueError)
