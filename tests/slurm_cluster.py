"""A throwaway single-node SLURM cluster for tests: munged, slurmctld and slurmd, all configured in a temp folder.

The node offers its CPUs, its memory and two (fake) GPUs as a GRES, so two training jobs run side by side as on a
2-core workstation. There is no slurmdbd: job states come from slurmctld through `squeue`, which keeps finished
jobs for MinJobAge seconds. Everything the cluster writes (state, spool, logs, munge socket) lives in the temp
folder, on free ports, so a system SLURM or munge is not touched. Debian's slurm-wlm and munge are installed with
apt-get when missing; when that is impossible the tests using the fixture are skipped, with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "srun")
START_TIMEOUT = 60


def _missing_binaries() -> list[str]:
    return [b for b in (*DAEMONS, *CLIENTS) if not shutil.which(b, path=f"{os.environ['PATH']}:/usr/sbin:/sbin")]


def install_slurm() -> str | None:
    """Install slurm-wlm and munge with apt-get if needed; the reason it cannot be done, or None when ready."""
    if not _missing_binaries():
        return None
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(_missing_binaries())} missing) and installing it needs root"
    if not shutil.which("apt-get"):
        return f"SLURM is not installed ({', '.join(_missing_binaries())} missing) and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    log = ""
    # A fresh container often has no package lists yet: only then pay for `apt-get update`.
    for cmd in ([install], [["apt-get", "update", "-q"], install]):
        try:
            for step in cmd:
                proc = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
                log = proc.stdout[-1500:] + proc.stderr[-1500:]
                if proc.returncode != 0:
                    break
            else:
                if not _missing_binaries():
                    return None
        except (OSError, subprocess.TimeoutExpired) as exc:
            log = str(exc)
    return f"could not install slurm-wlm and munge with apt-get (missing: {', '.join(_missing_binaries())}):\n{log}"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


GPUS = 2  # fake GPUs on the node: two training jobs side by side, as `make demo` runs them
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full")


def _node_line(hostname: str) -> str:
    """The node as slurmd sees it (CPUs, sockets, memory), plus the fake GPUs; registration fails on a mismatch."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True, timeout=60).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("NodeName="))
    fields = dict(kv.split("=", 1) for kv in line.split())
    fields.pop("NodeName")
    # a little headroom: slurmd drains a node whose memory turns out below the configured RealMemory
    fields["RealMemory"] = str(int(int(fields.get("RealMemory", "2000")) * 0.95))
    spec = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"NodeName={hostname} NodeAddr=127.0.0.1 {spec} Gres=gpu:{GPUS} State=UNKNOWN"


@dataclass
class SlurmCluster:
    root: Path
    hostname: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return self.environment()

    def environment(self, *path: str | Path) -> dict[str, str]:
        """Environment for anything talking to this cluster (daemons, sbatch/squeue, Snakemake), with `path`
        searched first after the cluster's own wrappers. Jobs inherit it (sbatch --export=ALL)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([str(self.root / "bin"), *map(str, path), env["PATH"], "/usr/sbin", "/sbin"])
        return env

    def log(self, name: str) -> Path:
        return self.root / "log" / f"{name}.log"

    def log_tails(self, n: int = 25) -> str:
        parts = []
        for name in DAEMONS:
            path = self.log(name)
            text = path.read_text(errors="replace").splitlines()[-n:] if path.exists() else ["(no log)"]
            proc = self.procs.get(name)
            state = "not started" if proc is None else f"exit code {proc.poll()}" if proc.poll() is not None else "up"
            parts.append(f"--- {name} ({state}): {path}\n" + "\n".join(text))
        return "\n".join(parts)

    def write_config(self) -> None:
        for sub in ("bin", "etc", "log", "state", "spool", "munge", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # The jobstep plugin strips SLURM_* (SLURM_CONF too) before its `srun` inside each job, and srun would
        # then look for /etc/slurm/slurm.conf: a wrapper first on PATH points it back here instead.
        srun = self.root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, d_port = _free_ports(2)
        r = self.root
        self.conf.write_text(
            f"""\
ClusterName=adtest
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={self.log("slurmctld")}
SlurmdLogFile={self.log("slurmd")}
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in a container: plain process tracking, no task binding or accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# Without slurmdbd, slurmctld's memory is the only record of finished jobs: Snakemake's squeue status checks
# need them kept >= 120 s; an hour also lets the tests inspect every job of a run afterwards (scontrol).
MinJobAge=3600
ReturnToService=2
InactiveLimit=0
KillWait=5
{_node_line(self.hostname)}
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )
        # fake GPUs: harmless character devices stand in for the device files, so GRES accounting works without
        # hardware (slurmd refuses the same file twice)
        files = "".join(f"Name=gpu File={dev}\n" for dev in FAKE_GPU_FILES[:GPUS])
        (self.root / "etc" / "gres.conf").write_text("AutoDetect=off\n" + files)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.stdout", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        out.close()

    def _wait(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                break
            if check():
                return
            time.sleep(0.5)
        stdout = "\n".join(
            f"--- {p.name}:\n{p.read_text(errors='replace')[-1500:]}"
            for p in sorted((self.root / "log").glob("*.stdout"))
        )
        raise RuntimeError(
            f"SLURM test cluster: {what} did not come up within {timeout:.0f} s\n{self.log_tails()}\n{stdout}"
        )

    def _sinfo_state(self) -> str:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], env=self.env, capture_output=True, text=True, timeout=15
        )
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.write_config()
        t0 = time.monotonic()
        r = self.root
        sock = r / "munge" / "munge.socket"
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={sock}",
                f"--key-file={r}/munge/munge.key",
                f"--pid-file={r}/run/munged.pid",
                f"--seed-file={r}/munge/seed",
                f"--log-file={self.log('munged')}",
            ],
        )
        self._wait("munged", sock.exists, timeout)
        # -D: stay in the foreground so the fixture owns the process; -c / -i: ignore any saved state
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["slurmd", "-D", "-c", "-f", str(self.conf), "-N", self.hostname])
        remaining = max(5.0, timeout - (time.monotonic() - t0))
        self._wait("the node (sinfo state idle)", lambda: self._sinfo_state() == "idle", remaining)

    def stop(self) -> None:
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            # cancel leftovers of an interrupted run while slurmd can still signal them
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and re.search(r"RUNNING|COMPLETING|PENDING", self.jobs()):
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        # safety net: anything still running with this cluster's SLURM_CONF (job steps, slurmstepd) is ours
        marker = f"SLURM_CONF={self.conf}".encode()
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                if int(pid_dir.name) != os.getpid() and marker in (pid_dir / "environ").read_bytes().split(b"\0"):
                    os.kill(int(pid_dir.name), 9)
            except (OSError, ValueError):
                pass

    def jobs(self) -> str:
        """squeue's view of every job it still remembers: id|name|state|gres."""
        proc = subprocess.run(
            ["squeue", "--states=all", "-h", "-o", "%i|%j|%T|%b"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=15,
        )
        return proc.stdout

    def job_record(self, job_id: str) -> dict[str, str]:
        """slurmctld's record of one job (`scontrol show job`), as key -> value."""
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], env=self.env, capture_output=True, text=True, timeout=15
        )
        return dict(re.findall(r"(\S+?)=(\S*)", proc.stdout))

    def batch_script(self, job_id: str) -> str:
        """The script slurmctld ran for a job (sbatch --wrap's command line included); kept as long as its record."""
        proc = subprocess.run(
            ["scontrol", "write", "batch_script", job_id, "-"], env=self.env, capture_output=True, text=True, timeout=15
        )
        return proc.stdout


def slurm_cluster_fixture(tmp_root: Path | None = None):
    """Generator behind the `slurm_cluster` fixture: skip if SLURM cannot be had, fail with logs if it won't start."""
    reason = install_slurm()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("slurmd needs root (SlurmdUser=root) to launch jobs")
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir=tmp_root))
    root.chmod(0o755)
    cluster = SlurmCluster(root)
    try:
        try:
            cluster.start()
        except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
            pytest.fail(str(exc), pytrace=False)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
