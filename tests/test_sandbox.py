"""The sandbox itself (autograder/sandbox.py, issue 12): what code inside it can see, reach and use.

Each test runs hostile Python inside the sandbox, as a student's kernel would run, and asserts on what it could
do. The end-to-end attacks through `grade` are in test_attacks.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autograder.sandbox import (
    GiB,
    Limits,
    MiB,
    ProcessGroup,
    process_limit_enforced,
    sandbox_command,
    sandbox_status,
)

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sandbox_status()[0] and os.environ.get("CI") != "true",
                                reason=f"no sandbox here: {sandbox_status()[1]}")


def run_inside(code: str, limits: Limits | None = None, env: dict | None = None, timeout: float = 120):
    limits = limits or Limits()
    group = ProcessGroup.create(limits)
    try:
        command = sandbox_command([sys.executable, "-c", textwrap.dedent(code)], limits=limits, env=env,
                                  cgroup=group)
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        if group:
            group.remove()


def test_the_sandbox_starts_here_in_ci():
    ok, why = sandbox_status()
    assert ok, why


def test_sees_no_private_files_and_writes_nowhere_but_scratch(tmp_path):
    secret = tmp_path / "submissions" / "victim" / "mdp.ipynb"
    secret.parent.mkdir(parents=True)
    secret.write_text("classmate's answers")
    done = run_inside(f"""
        import os
        for path in [{str(secret)!r}, {str(tmp_path)!r}, {str(REPO / 'book')!r}, {str(Path.home() / '.bashrc')!r},
                     "/etc/passwd", "/root/.ssh"]:
            print("SEEN" if os.path.exists(path) else "hidden", path)
        for path in [{str(REPO / 'autograder' / 'x.py')!r}, {str(Path(sys.prefix) / 'lib' / 'evil.pth')!r},
                     "/usr/evil", "/evil", {str(Path.home() / 'x')!r}]:
            try:
                open(path, "w").write("x")
                print("WROTE", path)
            except OSError as exc:
                print("refused", path, exc.errno)
        open("/tmp/scratch.txt", "w").write("fine")
        print("scratch ok", os.getcwd(), os.environ["HOME"])
    """.replace("sys.prefix", repr(sys.prefix)))
    assert done.returncode == 0, done.stderr
    assert "SEEN" not in done.stdout and "WROTE" not in done.stdout, done.stdout
    assert "scratch ok /tmp /tmp" in done.stdout
    assert not list(REPO.glob("autograder/x.py")) and not (Path(sys.prefix) / "lib" / "evil.pth").exists()


def test_no_network_not_even_the_hosts_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    done = run_inside(f"""
        import socket
        for host in ["127.0.0.1", "::1", "1.1.1.1"]:
            try:
                socket.create_connection((host, {port}), timeout=2)
                print("CONNECTED", host)
            except OSError as exc:
                print("blocked", host, type(exc).__name__)
    """)
    thread.join()
    server.close()
    assert "CONNECTED" not in done.stdout and done.stdout.count("blocked") == 3, done.stdout + done.stderr
    assert not accepted


def test_environment_is_clean_and_the_seed_is_only_in_a_file_the_checks_take():
    os.environ["GRADER_SECRET"] = "do not leak"
    try:
        done = run_inside("""
            import os
            print(sorted(os.environ))
            print("environ file has seed:", b"AUTOGRADER_SEED" in open("/proc/self/environ", "rb").read())
            import autograder.checks._harness as harness  # the kernel imports it at start-up
            print("seed file left:", os.path.exists("/tmp/.autograder-seed"))
            print("hidden draw:", harness.hidden_rng().integers(10**9))
        """, env={"AUTOGRADER_SEED": "4242"})
    finally:
        del os.environ["GRADER_SECRET"]
    assert done.returncode == 0, done.stderr
    assert "GRADER_SECRET" not in done.stdout and "AUTOGRADER_SEED" not in done.stdout.splitlines()[0]
    assert "environ file has seed: False" in done.stdout and "seed file left: False" in done.stdout
    import numpy as np

    assert f"hidden draw: {np.random.default_rng(4242).integers(10**9)}" in done.stdout


def test_memory_limit_raises_memory_error():
    done = run_inside("""
        try:
            block = bytearray(3 * 2**30)
            print("ALLOCATED")
        except MemoryError:
            print("MemoryError")
    """, limits=Limits(memory=1 * GiB))
    assert "MemoryError" in done.stdout and "ALLOCATED" not in done.stdout, done.stdout + done.stderr


def test_file_size_limit_and_scratch_size():
    done = run_inside("""
        try:
            with open("/tmp/big", "wb") as f:
                f.write(b"0" * (20 * 2**20))
            print("WROTE")
        except OSError as exc:
            print("refused", exc.errno)
    """, limits=Limits(file_size=8 * MiB))
    assert "refused 27" in done.stdout, done.stdout + done.stderr  # EFBIG; the process survives


@pytest.mark.skipif(not process_limit_enforced(), reason="root without a writable pids cgroup: no process limit")
def test_process_limit():
    done = run_inside("""
        import os, time
        started = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                started += 1
        except OSError as exc:
            print("fork refused after", started, exc.errno)
    """, limits=Limits(processes=20))
    assert "fork refused after" in done.stdout, done.stdout + done.stderr
    assert int(done.stdout.split("after")[1].split()[0]) < 20


def test_cpu_limit_kills():
    start = time.monotonic()
    done = run_inside("while True: pass", limits=Limits(cpu_time=2))
    assert done.returncode != 0 and time.monotonic() - start < 60


def test_nothing_outlives_the_sandbox(tmp_path):
    marker = f"sandbox-survivor-{os.getpid()}"
    run_inside(f"""
        import os, subprocess
        # a double fork, a new session, and a plain background process: all must die with the sandbox
        subprocess.Popen(["sh", "-c", "exec -a {marker} sleep 300"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["{marker}", "300"])
            os._exit(0)
        print("started")
    """)
    time.sleep(1)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert survivors == [], survivors


def test_limits_are_validated():
    with pytest.raises(ValueError, match="memory must be a positive integer"):
        Limits(memory=0)
    with pytest.raises(ValueError, match="processes"):
        Limits(processes=-1)
