"""``mailroom worker``: run some or all stages in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from streams.join import TriageJoin
from streams.models import LocalModels
from streams.runtime import Handler, StageRunner, durable_async_producer
from streams.settings import Settings
from streams.stages import Stages
from topics import catalog

log = logging.getLogger("mailroom.worker")


async def run_worker(
    settings: Settings,
    stages: Sequence[str] = catalog.STAGE_NAMES,
    stop: asyncio.Event | None = None,
) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    models = LocalModels(settings.data_dir)
    if "classify" in stages:
        _ = models.classifier  # train or load before consuming, not on the first email
    handlers = Stages(models=models, max_email_bytes=settings.max_email_bytes)
    producer = durable_async_producer(settings)
    await producer.start()
    tasks = []
    try:
        for name in stages:
            spec = catalog.stage(name)
            if name == "join":
                join = TriageJoin(settings, settings.join_timeout_s)
                runner = StageRunner(spec, join.handle, settings, producer)
                join.runner = runner
                tasks.append(
                    asyncio.create_task(
                        runner.run(stop, on_assign=join.restore, on_revoke=join.revoke)
                    )
                )
                tasks.append(asyncio.create_task(join.expire(stop)))
                continue
            handler: Handler = getattr(handlers, name)
            runner = StageRunner(spec, handler, settings, producer)
            tasks.append(asyncio.create_task(runner.run(stop)))
        log.info("worker running stages: %s", ", ".join(stages))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception():
                stop.set()
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
