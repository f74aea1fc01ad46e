"""The local trainer: takes queued jobs from the registry and runs each in its own process.

`keras-service trainer` runs this loop; `keras-service serve` starts one (the embedded
default). The loop itself never imports TensorFlow. Each job runs in a child process, so a
crash or an out-of-memory kill ends that job only. One child is always started ahead and
waits with TensorFlow imported, so a fit does not pay the import (~6 s) when it starts.

Jobs whose runner died (this trainer was killed, or the machine or container it ran in)
are found at start-up and every few seconds after, and end `failed` with the reason
"interrupted"; their model goes back to the state it had before the fit, and a version file
such a job wrote but never recorded (killed between the file's rename and the registry's
commit) is removed. They are not re-queued: a fit that crashed once may crash again, so the
client decides.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from service.config import Config
from service.registry import Database, JobRegistry
from service.registry.jobs import FINAL_STATES
from service.registry.tables import utcnow
from service.storage import ArtifactStore

log = logging.getLogger("keras_service.trainer")
POLL_S = 0.2
ORPHAN_CHECK_S = 5.0  # also how often a trainer tells the registry its jobs' runner lives
# A runner not heard from for this long is gone, wherever it ran (so host clocks must agree
# within it). A live trainer beats for its jobs every ORPHAN_CHECK_S, however long an epoch.
SILENT_AFTER_S = 120.0
# /proc gives a process's start in clock ticks after a boot time counted in whole seconds.
START_TIME_SLACK_S = 2.0
INTERRUPTED = ("interrupted: the trainer running this fit stopped before it ended (killed, "
               "crashed or shut down); the model is as it was before the fit. Fit again to retry.")


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the trainer) dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def child_main(connection, environment: dict, trainer_pid: int) -> None:
    """A job process: import Keras now, then wait for one job id and run it.

    The spare imports TensorFlow at the lowest CPU priority, so that warming it up does not
    slow the fit that is running meanwhile; it takes its normal priority back (where the
    system allows) when it gets a job.
    """
    os.environ.update(environment)
    _die_with_parent()
    if os.getppid() != trainer_pid:
        os._exit(0)  # the trainer died before the death signal was armed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(19)
    import keras  # noqa: F401 - the import is the warm-up

    from service.jobs.execution import run_job

    job_id = connection.recv()
    _normal_priority()
    if job_id is not None:
        run_job(job_id, Config.from_env())


def _normal_priority() -> None:
    # Linux keeps a nice value per thread, and TensorFlow started its threads while niced.
    for task in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]:
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpriority(os.PRIO_PROCESS, int(task), 0)


@dataclass
class _Child:
    process: multiprocessing.Process
    connection: object
    job_id: str | None = None


class LocalTrainer:
    def __init__(self, config: Config):
        self.config = config
        self.database = Database(config.database_url, config.data_dir)
        self.jobs = JobRegistry(self.database)
        self.store = ArtifactStore(config.data_dir)
        self.host = socket.gethostname()
        self.runner = f"{self.host}:{os.getpid()}"
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[str, _Child] = {}
        self.spare: _Child | None = None
        self.stopping = False
        self._last_orphan_check = 0.0

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("trainer %s started; %d job(s) at once", self.runner,
                 self.config.max_concurrent_jobs)
        self.fail_orphaned_jobs()
        while not self.stopping:
            self._reap()
            if time.monotonic() - self._last_orphan_check > ORPHAN_CHECK_S:
                self.fail_orphaned_jobs()
            self._start_queued_jobs()
            self._keep_a_spare()
            time.sleep(POLL_S)
        self._shut_down()

    def fail_orphaned_jobs(self) -> None:
        """End jobs whose runner is gone, and restore their models.

        On this host a runner is gone when its process is. On any host it is gone when it has
        not been heard from for SILENT_AFTER_S: a container started afresh has a new host
        name, so the jobs of the one before it would otherwise wait for a host that is no more.
        """
        self._last_orphan_check = time.monotonic()
        self.jobs.beat(list(self.running))
        for job in self.jobs.running_on(self.host + ":"):
            pid = int(job.runner.rsplit(":", 1)[1])
            mine = job.runner == self.runner
            if (mine and job.id in self.running) or (
                    not mine and _runner_alive(pid, job.started_at)):
                continue
            log.warning("job %s was interrupted (runner %s is gone)", job.id, job.runner)
            self._fail(job.id, INTERRUPTED)
        for job in self.jobs.silent_since(utcnow() - timedelta(seconds=SILENT_AFTER_S)):
            if job.id not in self.running:
                log.warning("job %s was interrupted (runner %s silent since %s)", job.id,
                            job.runner, job.heartbeat_at)
                self._fail(job.id, INTERRUPTED)

    def _fail(self, job_id: str, error: str) -> None:
        """End a job whose process is gone, with no version file it left unrecorded."""
        job = self.jobs.by_id(job_id)
        if job is None or job.state in FINAL_STATES:
            return  # its process recorded the outcome itself
        # Before the job ends it still holds its model (one fit per model at a time), so a
        # version file past the recorded ones can only be this job's, written just before
        # a kill. Removed first: once the job ends, another fit may write that number.
        unrecorded = self.store.remove_versions_from(
            job.model_id, self.jobs.next_version_number(job.model_id))
        if unrecorded:
            log.warning("job %s: removed version file(s) %s it wrote but never recorded",
                        job_id, unrecorded)
        self.jobs.end(job_id, "failed", error=error)

    def _start_queued_jobs(self) -> None:
        while len(self.running) < self.config.max_concurrent_jobs:
            job = self.jobs.claim_next(self.runner)
            if job is None:
                return
            child = self.spare or self._spawn()
            self.spare = None
            child.job_id = job.id
            child.connection.send(job.id)
            self.running[job.id] = child
            log.info("job %s started in process %s", job.id, child.process.pid)

    def _keep_a_spare(self) -> None:
        if self.spare is not None and not self.spare.process.is_alive():
            self.spare = None
        if self.spare is None:
            self.spare = self._spawn()

    def _spawn(self) -> _Child:
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(
            target=child_main, args=(child_end, self.config.to_env(), os.getpid()),
            name="keras-service-job", daemon=True)
        process.start()
        child_end.close()
        return _Child(process, parent_end)

    def _reap(self) -> None:
        for job_id, child in list(self.running.items()):
            if child.process.is_alive():
                continue
            child.process.join()
            del self.running[job_id]
            code = child.process.exitcode
            # A child that ended normally has recorded its job; otherwise do it for it.
            self._fail(job_id, _exit_reason(code))
            log.info("job %s process ended with code %s", job_id, code)

    def _stop(self, *_) -> None:
        self.stopping = True

    def _shut_down(self) -> None:
        for child in [*self.running.values(), *([self.spare] if self.spare else [])]:
            child.process.kill()
            child.process.join(timeout=10)
        for job_id in self.running:
            self._fail(job_id, INTERRUPTED)
        self.database.engine.dispose()
        log.info("trainer %s stopped", self.runner)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runner_alive(pid: int, claimed_at: datetime | None) -> bool:
    """Whether `pid` is still the process that claimed a job at `claimed_at`.

    After a restart (of a container, say) the old runner's pid may belong to a new process
    that has nothing to do with the job; a process started after the claim is not its runner.
    """
    if not _alive(pid):
        return False
    started = _process_start_time(pid)
    return (started is None or claimed_at is None
            or started <= claimed_at.timestamp() + START_TIME_SLACK_S)


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started, in seconds since the epoch; None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    # Fields after the command name (which may hold spaces), from field 3; 22 is starttime.
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return int(boot.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")


def _exit_reason(code: int | None) -> str:
    if code == 0:
        return "the training process ended without recording the job's outcome"
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the system may have run out of memory)" if name == "SIGKILL" else ""
        return f"the training process was killed by {name}{hint}"
    return f"the training process exited with code {code}"


def run_trainer(config: Config) -> None:
    from service.server import configure_logging

    configure_logging(config)
    LocalTrainer(config).run()
