"""The timer behind schedules (see bot.services.schedules, where the rules and the truth live).

APScheduler (3.x, AsyncIOScheduler, in memory) holds one job per active schedule, id ``schedule:<id>``,
set to its ``next_run_at``. It is built from the database at start and kept in step with it: every
committed change to the ``schedules`` table (create, edit, pause, resume, delete, a firing) triggers a
resync that adds, moves or removes only the jobs that differ. A job that goes off does not carry
any work itself: it runs ``run_due``, which fires whatever the database says is due. So a stale or
early job does nothing harmful, and tests with a frozen clock call ``run_due`` directly instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.services import schedules as schedule_service
from bot.services.clock import Clock
from storage.changes import off_committed_changes, on_committed_changes
from storage.db import Database

log = logging.getLogger(__name__)

RETRY_AFTER = timedelta(seconds=30)
SWEEP_SECONDS = 60


class Scheduler:
    BATCH = 200

    def __init__(
        self, db: Database, clock: Clock, *, default_language: str, default_timezone: str, timer: bool = True
    ) -> None:
        self.db = db
        self.clock = clock
        self.defaults = {"default_language": default_language, "default_timezone": default_timezone}
        self.timer = timer
        # misfire_grace_time=None: a job that is late (a busy loop, a suspended host) still runs; whether
        # the run is still worth sending is the grace window's decision, made from the database.
        self._aps = AsyncIOScheduler(
            timezone=UTC, job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1}
        )
        self._jobs: dict[int, datetime] = {}  # what the timer holds: schedule id → run date
        self._firing = asyncio.Lock()
        self._resync_task: asyncio.Task | None = None
        self._resync_again = False
        on_committed_changes(self._on_changes, db.engine.sync_engine)

    # -------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Build the timer from the database, then send what came due while the process was down."""
        await self.resync()  # jobs added before the start are queued, not woken for one by one
        if self.timer:
            # A sweep now and then: should a job ever go missing (a resync that failed), a due firing is
            # still found in the database within a minute.
            self._aps.add_job(self._job, IntervalTrigger(seconds=SWEEP_SECONDS), args=(0,), id="schedule-sweep")
            self._aps.start()
        try:
            await self.run_due()
        except Exception:  # the bot still starts; the timer tries again
            log.exception("running due schedules at start failed")
            self._retry_later()

    async def stop(self) -> None:
        off_committed_changes(self._on_changes)
        if self._resync_task is not None:
            self._resync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync_task
        if self._aps.running:
            self._aps.shutdown(wait=False)

    @property
    def job_count(self) -> int:
        """Jobs the timer holds for schedules (the sweep and a retry not counted)."""
        return sum(1 for job in self._aps.get_jobs() if job.id.startswith("schedule:")) if self.timer else 0

    # -------------------------------------------------------------------------------- firing

    async def run_due(self) -> int:
        """Fire every schedule that is due now (the arq-style "run everything due" used by tests)."""
        fired = 0
        async with self._firing:
            while True:
                async with self.db.transaction() as session:
                    firings = await schedule_service.fire_due(session, self.clock.now(), self.BATCH, **self.defaults)
                fired += sum(1 for firing in firings if firing.sent is not None)
                if len(firings) < self.BATCH:
                    break
        return fired

    async def _job(self, schedule_id: int) -> None:
        self._jobs.pop(schedule_id, None)  # a date job is gone once it ran; let resync put the next one
        try:
            await self.run_due()
        except Exception:
            log.exception("running due schedules failed")
            self._retry_later()

    def _retry_later(self) -> None:
        """After a failure (the database away, say): look again in a while, not at once and in a loop."""
        if self.timer:
            self._aps.add_job(
                self._job,
                DateTrigger(run_date=datetime.now(UTC) + RETRY_AFTER, timezone=UTC),
                args=(0,),  # no schedule of its own: it runs whatever is due, and on failure comes back
                id="schedule-retry",
                replace_existing=True,
            )

    # -------------------------------------------------------------------------------- keeping in step

    def _on_changes(self, tables: frozenset[str]) -> None:
        if "schedules" in tables and self.timer:
            self._request_resync()

    def _request_resync(self) -> None:
        if self._resync_task is not None and not self._resync_task.done():
            self._resync_again = True  # a burst of changes becomes one more pass
            return
        self._resync_task = asyncio.get_running_loop().create_task(self._resync_loop(), name="scheduler-resync")

    async def _resync_loop(self) -> None:
        while True:
            self._resync_again = False
            try:
                await self.resync()
            except Exception:
                log.exception("rebuilding the schedule timer failed")
            if not self._resync_again:
                return

    async def resync(self) -> None:
        """Make the timer hold exactly the database's active schedules at their next run."""
        if not self.timer:
            return
        async with self.db.transaction(read_only=True) as session:
            wanted = await schedule_service.timetable(session)
        for schedule_id in self._jobs.keys() - wanted.keys():
            with contextlib.suppress(JobLookupError):
                self._aps.remove_job(f"schedule:{schedule_id}")
        for schedule_id, run_at in wanted.items():
            if self._jobs.get(schedule_id) != run_at:
                self._aps.add_job(
                    self._job,
                    DateTrigger(run_date=run_at, timezone=UTC),
                    args=(schedule_id,),
                    id=f"schedule:{schedule_id}",
                    replace_existing=True,
                )
        self._jobs = wanted
