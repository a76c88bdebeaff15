"""The notifier service process: runtime + handlers + routes + the SMTP sender."""

import asyncio
from pathlib import Path

from fastapi import FastAPI

from procure_notifier.api import router
from procure_notifier.handlers import handlers
from procure_notifier.models import metadata
from procure_notifier.sender import Sender, SmtpSettings, pooled, wake_one
from procure_runtime import ServiceRuntime
from procure_runtime.http import create_app
from procure_runtime.kafka import OFF_THE_ROUTING_PATH
from procure_runtime.service import run
from procure_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class NotifierRuntime(ServiceRuntime):
    """The shared runtime, plus the sender loops that live and die with it: one per SMTP
    connection (`PROCURE_SMTP_CONNECTIONS`); their claims never share a row."""

    def __init__(self, settings: ServiceSettings | None, smtp: SmtpSettings) -> None:
        super().__init__(
            "notifier",
            metadata,
            MIGRATIONS,
            handlers,
            settings=settings,
            gathering=OFF_THE_ROUTING_PATH,  # mail waits for a sender anyway
        )
        self.senders = pooled([Sender(self.db, smtp) for _ in range(smtp.connections)])
        # Nearly every event the notifier applies queues mails: mail them now.
        self.consumer.on_applied = lambda: wake_one(self.senders)

    async def start(self) -> None:
        await super().start()  # migrations first: the senders read the log table
        for sender in self.senders:
            sender.start()

    async def stop(self) -> None:
        await asyncio.gather(*(sender.stop() for sender in self.senders))
        await super().stop()


def build(
    settings: ServiceSettings | None = None, smtp: SmtpSettings | None = None
) -> tuple[FastAPI, NotifierRuntime]:
    runtime = NotifierRuntime(settings, smtp or SmtpSettings())
    return create_app(runtime, router), runtime


def main() -> None:
    app, runtime = build()
    run(app, runtime)
