"""Podman as the container engine for the deployment tests, and stand-ins for the base images.

There is no image registry on our CI machine, so the images the Dockerfile and the compose file
name (`python:3.11-slim`, `nginx:1.27`) are stood in for: a Debian bookworm root made by
debootstrap, imported under the exact name. The Dockerfile itself stays what a user builds against
the official images. Where podman can pull, the real images are used instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PYTHON_BASE = "docker.io/library/python:3.11-slim"
NGINX_BASE = "docker.io/library/nginx:1.27"
# Where this machine keeps its stand-ins between runs: building one takes about a minute.
STANDIN_CACHE = Path(os.environ.get("STANDIN_CACHE_DIR", "/var/cache/paddle-classifier-serving/standins"))
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# runc, cgroupfs and no default ulimits: what rootful podman needs inside this kind of sandbox
# (crun refuses hybrid cgroups; setting the default ulimits fails with EPERM).
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
NGINX_CONTAINERFILE = f"""\
FROM {PYTHON_BASE}
RUN apt-get update && apt-get install -y --no-install-recommends nginx \\
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default
CMD ["nginx", "-g", "daemon off;"]
"""


class EngineError(RuntimeError):
    pass


@dataclass
class Podman:
    env: dict[str, str]

    @classmethod
    def create(cls) -> Podman:
        conf = Path(tempfile.mkdtemp(prefix="podman-conf-")) / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        return cls({**os.environ, "CONTAINERS_CONF": str(conf)})

    def run(self, *args: str, timeout: float = 600, check: bool = True, stdin: bytes | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_command(["podman", *args], self.env, timeout, check, cwd)

    def image_exists(self, name: str) -> bool:
        return self.run("image", "exists", name, check=False).returncode == 0

    def container_ids(self, *filters: str) -> list[str]:
        args = [arg for f in filters for arg in ("--filter", f)]
        return self.run("ps", "-q", *args).stdout.split()


def run_command(argv: list[str], env: dict[str, str], timeout: float = 600, check: bool = True,
                cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise EngineError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def engine_unavailable_reason() -> str | None:
    """Why containers cannot run here, or None when they can."""
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc debootstrap; see README, Deploy)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    probe = Podman.create().run("info", check=False, timeout=120)
    if probe.returncode != 0:
        return f"podman cannot run here: {probe.stderr.strip()[-300:]}"
    return None


def ensure_base_images(podman: Podman) -> None:
    for name, build in ((PYTHON_BASE, build_python_standin), (NGINX_BASE, build_nginx_standin)):
        if podman.image_exists(name):
            continue
        if podman.run("pull", name, check=False, timeout=300).returncode == 0:
            continue
        build(podman)


def build_python_standin(podman: Podman) -> None:
    """Debian bookworm (Python 3.11, like the official image) with pip, venv and the host's CAs."""
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        raise EngineError(f"no {PYTHON_BASE} and no way to stand in for it (needs root and debootstrap)")
    root = STANDIN_CACHE / "python-bookworm"
    if not (root / "usr/bin/python3").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        run_command(["debootstrap", "--variant=minbase",
                     "--include=python3,python3-venv,python3-pip,ca-certificates,python-is-python3",
                     "bookworm", str(root), "http://deb.debian.org/debian"], dict(os.environ), timeout=1200)
        for leftover in (root / "var/cache/apt/archives").glob("*.deb"):
            leftover.unlink()
    # pip and apt inside builds go through this machine's TLS proxy: trust what the host trusts.
    shutil.copyfile(HOST_CA_BUNDLE, root / "etc/ssl/certs/host-ca-bundle.crt")
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["podman", "import", "--change", "ENV PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt",
         "--change", 'CMD ["python3"]', "-", PYTHON_BASE],
        stdin=tar.stdout, env=podman.env, capture_output=True, text=True, timeout=600)
    tar.wait()
    if imported.returncode != 0:
        raise EngineError(f"podman import failed: {imported.stderr[-2000:]}")


def build_nginx_standin(podman: Podman) -> None:
    """Debian's nginx package on the Debian stand-in, run in the foreground like the official image."""
    context = Path(tempfile.mkdtemp(prefix="nginx-standin-"))
    (context / "Containerfile").write_text(NGINX_CONTAINERFILE)
    podman.run("build", "--network=host", "--pull=never", "-t", NGINX_BASE, str(context), timeout=900)
