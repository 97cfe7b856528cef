"""CPU thread default and its override (the speed figures come from `tatar bench threads`, not from a test)."""

import pytest

from tatar.threads import ENV, cpu_threads


def test_one_thread_by_default_and_the_environment_overrides(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert cpu_threads() == 1
    monkeypatch.setenv(ENV, "0")
    assert cpu_threads() == 0
    monkeypatch.setenv(ENV, "2")
    assert cpu_threads() == 2


@pytest.mark.parametrize("value", ["two", "-1"])
def test_bad_values_are_one_line_errors(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(SystemExit, match=ENV):
        cpu_threads()
