"""In CI (`CI` set) a skipped test fails the run: a test that does not run proves nothing,
and CI must not go green on it."""

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import pytest

def test_skips_itself():
    pytest.skip("not here")

@pytest.mark.skip(reason="marked")
def test_marked_skip():
    pass

@pytest.fixture
def unavailable():
    pytest.skip("a fixture that cannot be had")

def test_with_a_skipping_fixture(unavailable):
    pass

def test_runs():
    assert True
"""


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    pytester.makeconftest('pytest_plugins = ["procure_devstack.pytest_plugin"]')
    pytester.makepyfile(TESTS)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider")


def test_in_ci_every_skip_is_a_failure(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = _run(pytester)
    result.assert_outcomes(passed=1, failed=1, errors=2)  # a skip in setup: an error
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*test_skips_itself - skipped in CI: Skipped: not here*",
            "*test_marked_skip - skipped in CI: Skipped: marked*",
            "*test_with_a_skipping_fixture - skipped in CI: Skipped: a fixture*",
        ]
    )


def test_outside_ci_a_skip_is_a_skip(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = _run(pytester)
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == pytest.ExitCode.OK
