"""Let pytest rewrite the asserts of the golden helpers, so a failed comparison
shows the diff rather than a bare AssertionError."""

import pytest

pytest.register_assert_rewrite("tests.protocol.golden")
