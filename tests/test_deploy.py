"""The cluster examples in deploy/ stay runnable as the CLI changes: their ``uner extract``
commands parse, their extras exist, and their Ray versions agree (no cluster runs here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from uner.cli import app

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _parse_extract(command: str) -> dict:
    """The options ``uner extract`` reads from ``command``; a renamed or removed option fails."""
    import typer.main

    words = shlex.split(command)
    assert words[:2] == ["uner", "extract"], command
    extract = typer.main.get_command(app).commands["extract"]
    return extract.make_context("extract", words[2:]).params


def test_the_kuberay_job_runs_a_valid_ray_extraction():
    job = yaml.safe_load((DEPLOY / "kuberay" / "rayjob.yaml").read_text())
    params = _parse_extract(job["spec"]["entrypoint"])
    assert params["on_ray"] and params["workers"] == 8 and params["threads_per_worker"] == 8
    assert params["input"] == "s3://my-bucket/corpus/"  # as typed: a Path would make it s3:/my-bucket
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    cpus = int(workers["rayStartParams"]["num-cpus"]) * workers["replicas"]
    assert cpus == params["workers"] * params["threads_per_worker"], "the workers would not all be placed"


def test_the_ray_up_cluster_runs_a_valid_ray_extraction():
    text = (DEPLOY / "ray-up" / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    comment = " ".join(line.lstrip("# ").strip() for line in text.splitlines()[-4:])
    command = re.search(r'"(uner extract [^"]+)"', comment).group(1)
    params = _parse_extract(command)
    nodes = config["available_node_types"]["cpu"]
    assert params["on_ray"] and params["ray_address"] == "auto"
    assert nodes["resources"]["CPU"] * nodes["min_workers"] == params["workers"] * params["threads_per_worker"]


def test_the_image_installs_extras_that_exist_on_the_cluster_ray_version():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    installed = re.search(r"uner-toolkit\[([a-z,]+)\]", dockerfile).group(1).split(",")
    assert set(installed) <= set(extras)
    image_ray = re.search(r"FROM rayproject/ray:([0-9.]+)", dockerfile).group(1)
    job = yaml.safe_load((DEPLOY / "kuberay" / "rayjob.yaml").read_text())
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == image_ray
    low, high = re.search(r"ray\[data\]>=([0-9.]+),<([0-9]+)", " ".join(extras["ray"])).groups()
    as_tuple = lambda version: tuple(int(part) for part in version.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(image_ray) < (int(high),)


@pytest.mark.parametrize(
    ("option", "error"),
    [("--workers 0", "greater than or equal to 1"), ("--part-rows 0", "greater than or equal to 1"),
     ("--worker 2", "No such option")],
)  # fmt: skip
def test_a_command_with_a_bad_option_is_refused(option, error):
    with pytest.raises(Exception, match=error):
        _parse_extract(f"uner extract -m x -l person -i in.jsonl -o out --ray {option}")
