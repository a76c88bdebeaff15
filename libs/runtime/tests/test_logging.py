"""A service's output is JSON lines on stderr, its own lines and the libraries' alike
(docs/operations.md, `PROCURE_LOG_LEVEL`). Run in a fresh interpreter: the test runner
configures the root logger of its own process first."""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging
    from procure_runtime.logging import bind, configure_logging, faststream_logger, get_logger

    configure_logging("probe", "INFO")
    configure_logging("probe", "INFO")  # again, as the runtime's start does: no second handler
    bind(event_id="e-1")
    get_logger("procure.test").info("ours", n=1)
    logging.getLogger("aiokafka.consumer").warning("fetch failed: %s", "NotLeader")
    logging.getLogger("uvicorn.error").info("up", extra={"color_message": "\\x1b[1mup\\x1b[0m"})
    logging.getLogger("sqlalchemy.engine").debug("below the level")
    fs = faststream_logger()
    fs.log(logging.INFO, "assigned", extra={"topic": "t.a,t.b", "group_id": "g", "message_id": ""})
    fs.log(logging.WARNING, "Topic creation is skipped in consumer-only mode. Make sure the topics exist.")
    try:
        1 / 0
    except ZeroDivisionError:
        fs.exception("handler failed")
    """
)


def test_every_line_a_service_writes_is_one_json_object_on_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == ""
    assert "\x1b[" not in done.stderr  # no terminal colours in a log file
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    by_event = {line["event"]: line for line in lines}
    assert list(by_event) == ["ours", "fetch failed: NotLeader", "up", "assigned", "handler failed"]
    for line in lines:
        assert line["service"] == "probe" and line["event_id"] == "e-1"
        assert line["timestamp"].endswith("Z") and line["level"] in {"info", "warning", "error"}
    assert by_event["ours"]["n"] == 1
    assert by_event["fetch failed: NotLeader"]["logger"] == "aiokafka.consumer"
    assert by_event["fetch failed: NotLeader"]["level"] == "warning"
    assert "color_message" not in by_event["up"]
    # FastStream's context comes along; its warning about topics the runtime creates
    # itself (`ensure_topics`) does not.
    assert by_event["assigned"]["topic"] == "t.a,t.b" and by_event["assigned"]["group_id"] == "g"
    assert "message_id" not in by_event["assigned"]  # empty: the line is about no message
    assert "ZeroDivisionError" in by_event["handler failed"]["exception"]


THREADED = textwrap.dedent(
    """
    import logging, threading
    from procure_runtime.logging import configure_logging, get_logger

    configure_logging("probe", "INFO")
    def theirs():
        for i in range(3000):
            logging.getLogger("aiosqlite").info("from a driver's thread %d", i)
    thread = threading.Thread(target=theirs)
    thread.start()
    for i in range(3000):
        get_logger().info("ours", i=i)
    thread.join()
    """
)


def test_lines_written_from_several_threads_do_not_run_into_each_other() -> None:
    # aiosqlite logs from its connection threads while the event loop's thread logs:
    # each line must reach the stream in one piece.
    done = subprocess.run(
        [sys.executable, "-c", THREADED], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert sorted(line["event"][:4] for line in lines) == ["from"] * 3000 + ["ours"] * 3000
