"""Schemathesis fuzzes a running server from the OpenAPI schema it publishes: no 5xx, and every
response valid against that schema. At least 1,000 generated requests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import Server


def test_fuzz_openapi_no_server_errors_and_schema_conformance(server: Server) -> None:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    result = subprocess.run(
        [executable, "run", f"{server.url}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
         "--max-examples", "150", "--seed", "20261123", "--no-color"],
        capture_output=True, text=True, timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated, output[-3000:]
    assert int(generated.group(1)) >= 1000 and generated.group(1) == generated.group(2), generated.group(0)
