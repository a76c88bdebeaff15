"""A test that runs into its timeout while awaiting reports what each asyncio task was
awaiting: pytest-timeout's own dump shows the threads only, where an awaiting test is
nothing but an event loop idle in `select`."""

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import asyncio
import pytest

async def wait_for_a_reply(future):
    return await future

async def the_request():
    return await wait_for_a_reply(asyncio.get_running_loop().create_future())

@pytest.mark.asyncio
@pytest.mark.timeout(3)
async def test_hangs():
    helper = asyncio.create_task(asyncio.sleep(3600), name="a-helper")
    try:
        await the_request()
    finally:
        helper.cancel()

@pytest.mark.asyncio
@pytest.mark.timeout(3)
async def test_fails_quickly():
    assert False
"""


def test_a_hung_test_reports_every_tasks_await_chain(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["procure_devstack.pytest_plugin"]')
    pytester.makepyfile(TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "asyncio")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert out.count("asyncio tasks near the timeout") == 1, out  # not the quick failure
    result.stdout.fnmatch_lines(
        [
            "*asyncio tasks near the timeout*",
            "task Task-*",  # the test's own
            "*in test_hangs",
            "*in the_request",
            "*in wait_for_a_reply",
            "  awaiting <Future pending*",
            "task a-helper:",
            "*in sleep",
            "  awaiting <Future pending*",
        ]
    )
