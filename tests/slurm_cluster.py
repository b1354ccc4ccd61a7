"""A real one-node SLURM cluster for tests: ``munged``, ``slurmctld`` and ``slurmd`` on loopback.

Everything lives in a temporary folder owned by the test: the MUNGE key, socket, pid and seed
files, a generated ``slurm.conf`` (free ports, no cgroups, state and spool folders), the daemons'
logs. Clients find the cluster through ``SLURM_CONF`` (:meth:`SlurmCluster.env`); nothing under
/etc or /run is read or written and no system service is touched. The daemons run in the
foreground, die with the process that started them, and are stopped by pid.

Two settings make SLURM's own requeue fast enough for a test: ``cred_expire=5`` (a requeued job
waits this long before it may start again, 120 s by default) and ``sched_interval=1`` (how often
the scheduler looks at pending jobs whose wait is over, 60 s by default).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from daemons import free_ports, start_daemon

#: The daemons and clients a cluster needs (Debian: ``apt-get install slurm-wlm munge``).
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "srun", "sbatch", "scontrol", "scancel", "squeue")

#: The node's name: one every host resolves, as the ranks take their main address from
#: ``SLURM_NODELIST`` (Lightning's SLURMEnvironment) and a real node's name resolves too.
NODE = "localhost"


def binary(name: str) -> str | None:
    """Path of a SLURM or MUNGE program (daemons live in /usr/sbin, often not on a user's PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=path)


def missing_binaries() -> list[str]:
    """The programs of :data:`BINARIES` not installed here."""
    return [name for name in BINARIES if binary(name) is None]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"--- {path.name}: (none)"
    return "\n".join([f"--- {path.name}:", *text])


class SlurmCluster:
    """One node (:data:`NODE`, every CPU of this machine) in one partition, ``debug``."""

    def __init__(self) -> None:
        # munged wants its socket's folder searchable by everyone (clients of any user connect),
        # which a pytest tmp_path (under a 0700 folder) is not: a folder of our own in $TMPDIR.
        self.root = Path(tempfile.mkdtemp(prefix="expconf-slurm-"))
        self.root.chmod(0o711)
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge.sock"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) for ``srun``/``sbatch``/``scontrol`` calls on
        this cluster: ``SLURM_CONF`` set, and no ``SLURM_*`` variable of an enclosing job, which would
        make ``srun`` start a step of that job instead of a new one."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("SLURM_")}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *args: str, timeout: float = 30) -> str:
        """Run a SLURM client (``scontrol``, ``squeue``, ...) against this cluster; its stdout."""
        program = binary(args[0])
        assert program is not None, args[0]
        proc = subprocess.run(
            [program, *args[1:]], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
        fields = self.run("scontrol", "show", "job", "--oneliner", job_id).split()
        return dict(f.split("=", 1) for f in fields if "=" in f)

    # -- start and stop -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Start the daemons and wait until the node is idle; retries with new ports if one was taken."""
        missing = missing_binaries()
        if missing:
            raise RuntimeError(
                f"SLURM is not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge"
            )
        self._start_munge(timeout)
        for _attempt in range(3):
            ctld_port, slurmd_port = free_ports(2)
            self._write_conf(ctld_port, slurmd_port)
            self._spawn("slurmctld", "-D")
            self._spawn("slurmd", "-D", "-N", NODE)
            if self._wait_idle(timeout):
                return
            self._stop("slurmd")
            self._stop("slurmctld")
        logs = "\n".join(_tail(self.root / f"{name}.log") for name in ("munged", "slurmctld", "slurmd"))
        self.close()
        raise RuntimeError(
            f"SLURM did not start (a daemon exited, or the node was not idle within {timeout:.0f} s)\n{logs}"
        )

    def _start_munge(self, timeout: float) -> None:
        key = self.root / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # munged refuses a readable key
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(128))
        self._spawn(
            "munged",
            "--foreground",
            f"--socket={self.socket}",
            f"--key-file={key}",
            f"--pid-file={self.root / 'munged.pid'}",
            f"--seed-file={self.root / 'munged.seed'}",
            f"--log-file={self.root / 'munged.log'}",
        )
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if self.procs["munged"].poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"munged did not start\n{_tail(self.root / 'munged.log')}")
            time.sleep(0.05)

    def _write_conf(self, ctld_port: int, slurmd_port: int) -> None:
        for name in ("state", "spool"):
            shutil.rmtree(self.root / name, ignore_errors=True)
            (self.root / name).mkdir()
        settings = {
            "ClusterName": "expconf",
            "SlurmctldHost": f"{NODE}(127.0.0.1)",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.socket},cred_expire=5",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "SchedulerType": "sched/builtin",
            "SchedulerParameters": "sched_interval=1",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "ReturnToService": 2,
        }
        lines = [f"{key}={value}" for key, value in settings.items()]
        lines += [
            f"NodeName={NODE} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
            f"PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, *args: str) -> None:
        program = binary(name)
        assert program is not None, name
        self.procs[name] = start_daemon([program, *args], self.root / f"{name}.log", self.env(), self.root)

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self.procs.values()):
                return False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                if self.run("sinfo", "--noheader", f"--nodes={NODE}", "--format=%T", timeout=10).strip() == "idle":
                    return True
            time.sleep(0.2)
        return False

    def _stop(self, name: str) -> None:
        """SIGTERM to one daemon, SIGKILL after 10 s."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def _cancel_jobs(self, timeout: float = 30.0) -> None:
        """Cancel every job and wait until SLURM has ended their processes."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.run("scancel", "--partition=debug")
            deadline = time.monotonic() + timeout
            while self.run("squeue", "--noheader", "--format=%i").split() and time.monotonic() < deadline:
                time.sleep(0.2)

    def close(self) -> None:
        """Cancel the jobs left, stop the daemons by pid and remove the folder."""
        if "slurmctld" in self.procs and "slurmd" in self.procs:
            self._cancel_jobs()
        for name in ("slurmd", "slurmctld", "munged"):
            self._stop(name)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running() -> Iterator[SlurmCluster]:
    """A started cluster, closed on exit."""
    cluster = SlurmCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
