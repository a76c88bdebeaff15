"""Root pytest configuration: the real-stack fixtures, and the reliability table that the
fault tests print at the end of a run (docs/reliability.md explains each row)."""

import pytest

pytest_plugins = ["procure_devstack.pytest_plugin"]

COLUMNS = ("lost", "duplicates", "emails", "dead_letters")
HEADINGS = ("lost", "duplicated effects", "duplicated emails", "dead letters")
_rows: dict[str, tuple[str, tuple[str, ...]]] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    marker = item.get_closest_marker("faults")
    if marker and (report.when == "call" or report.failed):
        checks = marker.kwargs.get("checks", ())
        if report.passed:
            cells = tuple("0" if c in checks else "-" for c in COLUMNS)
        else:
            cells = tuple("FAILED" if c in checks else "-" for c in COLUMNS)
        _rows[item.nodeid] = (report.outcome, cells)
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section(
        "reliability: faults x (lost, duplicated effects, duplicated emails, dead letters)"
    )
    write("| fault test | " + " | ".join(HEADINGS) + " |")
    write("|---" * (len(HEADINGS) + 1) + "|")
    for nodeid, (_outcome, cells) in _rows.items():
        write(f"| {nodeid} | " + " | ".join(cells) + " |")
