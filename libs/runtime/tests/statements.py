"""What the tests of driver-run statements share."""

from sqlalchemy import event

from procure_runtime.db import Database


def listen(db: Database) -> tuple[list[str], list[str]]:
    """Statements as `before_cursor_execute` and `after_cursor_execute` see them (the
    second fires only for what SQLAlchemy ran itself)."""
    before: list[str] = []
    after: list[str] = []
    sync = db.engine.sync_engine
    event.listen(sync, "before_cursor_execute", lambda c, cur, s, *a: before.append(s))
    event.listen(sync, "after_cursor_execute", lambda c, cur, s, *a: after.append(s))
    return before, after
