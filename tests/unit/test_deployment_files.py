"""No container engine runs here (tests/e2e/deploy does that): parse the Dockerfile and compose file and check that they
point at files that exist, at the real app entry point, and at the real port."""

from __future__ import annotations

import re
import shlex

import yaml

from tests.conftest import ROOT


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_copies_files_that_exist_and_runs_the_app() -> None:
    instructions = dockerfile_instructions()
    for kind, args in instructions:
        if kind == "COPY" and "--from" not in args:
            *sources, _target = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    cmd = next(args for kind, args in instructions if kind == "CMD")
    assert '"-m", "app"' in cmd and '"8000"' in cmd
    assert any(kind == "EXPOSE" and args == "8000" for kind, args in instructions)
    healthcheck = next(args for kind, args in instructions if kind == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    users = [args for kind, args in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(kind == "RUN" and "pip install ." in args for kind, args in instructions)


def test_compose_serves_port_8000_through_the_balancer_with_read_only_models() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    api, lb = compose["services"]["api"], compose["services"]["lb"]
    assert (ROOT / api["build"] / "Dockerfile").is_file()
    assert "ports" not in api, "replicas publish no host port, so --scale api=N does not collide"
    assert "8000" in api["expose"] and any(p.endswith(":80") and "8000" in p for p in lb["ports"])
    conf_mount = next(v for v in lb["volumes"] if "nginx.conf" in v)
    assert (ROOT / conf_mount.split(":")[0]).is_file()
    assert "server api:8000" in (ROOT / "deploy" / "nginx.conf").read_text()
    volume = next(v for v in api["volumes"] if v.startswith("./models"))
    source, target, mode = volume.split(":")
    assert (ROOT / source).is_dir() and mode == "ro"
    assert api["environment"]["APP_MODEL_DIR"] == target
    assert any("8000" in part and "z" in part for part in api["healthcheck"]["test"])
    assert api["restart"] in ("unless-stopped", "always", "on-failure")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"APP_MODEL_DIR={target}" in dockerfile


def test_compose_gpu_profile_reserves_an_nvidia_device_and_is_off_by_default() -> None:
    gpu = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["api-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["environment"]["APP_DEVICE"] == "gpu"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert set(gpu["build"]["args"]) <= set(re.findall(r"^ARG (\w+)", (ROOT / "Dockerfile").read_text(), re.M))
