"""The core never imports ray (STYLE rule 1): only hgnas_ray/distributed/ and the entry points."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hgnas_ray"
RAY_IMPORT = re.compile(r"^\s*(import ray\b|from ray\b)", re.MULTILINE)


def test_no_ray_import_outside_distributed():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "distributed" not in p.relative_to(PACKAGE).parts
                 and RAY_IMPORT.search(p.read_text())]
    assert offenders == [], f"modules importing ray outside distributed/: {offenders}"


def test_importing_the_core_does_not_load_ray():
    code = ("import sys, hgnas_ray.space, hgnas_ray.nn, hgnas_ray.data, hgnas_ray.proxies, "
            "hgnas_ray.evaluation, hgnas_ray.cli; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
