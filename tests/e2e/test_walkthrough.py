"""The README's walkthrough script (`docs/walkthrough.sh`, curl only) runs to the end on
the real stack: every step it waits for is really waited for."""

import asyncio
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from procure_contracts.shapes import Person
from procure_devstack.demo import Actor, Api
from procure_devstack.stack import Stack
from procure_devstack.testing import unique

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

SCRIPT = Path(__file__).parents[2] / "docs" / "walkthrough.sh"


async def test_the_walkthrough_script_ends_with_a_fulfilled_and_posted_order(stack: Stack) -> None:
    admin = Actor(Person(id="walker", name="Walker", email="walker@example.com"), ("admin",))
    async with Api(stack.urls, stack.secret) as api:
        token = api.token(admin)
    ports = {f"{name.upper()}_PORT": str(urlsplit(url).port) for name, url in stack.urls.items()}
    run = unique()
    done = await asyncio.create_subprocess_exec(
        "bash",
        str(SCRIPT),
        env={**os.environ, **ports, "PROCURE_TOKEN": token, "RUN": run},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(done.communicate(), timeout=300)
    assert done.returncode == 0, f"{out.decode()[-3000:]}\n{err.decode()[-3000:]}"
    text = out.decode()
    assert f"sales order so-{run} Fulfilled can_fulfill: True" in text, text[-3000:]
    assert re.search(r"charge \S+ \{'Delivered/Shipped': 2\} posted: True", text), text[-3000:]
