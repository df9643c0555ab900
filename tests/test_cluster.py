"""Running on a real cluster: the launcher config, the container and KubeRay manifests, joining
an unreachable address, GPU requests a cluster cannot meet, and (slow) a real multi-node Ray
cluster on this machine (cluster/local_cluster.sh: a head and 2 worker nodes, each its own
`ray start`) where `ray job submit` scores a corpus on every node, runs the whole search job
(tiny) with its corpus stage scoring on every node, a worker node is killed mid-scoring, and
the dashboard and metrics endpoints are read.

The config tests are fast and run by default; the multi-node tests are marked slow (each start
of the local cluster takes about a minute on the loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAMLS = [REPO / "ray_cluster.yaml", REPO / "cluster" / "gcp" / "ray_cluster.yaml"]
KUBERAY = [REPO / "cluster" / "kuberay" / "raycluster.yaml",
           REPO / "cluster" / "kuberay" / "rayjob.yaml"]
SCRIPT = REPO / "cluster" / "local_cluster.sh"


# ----------------------------------------------------------------- configs and manifests
def _pinned_tag() -> str:
    """The image version the Dockerfile declares: <project version>-ray<Ray version>."""
    text = (REPO / "cluster" / "Dockerfile").read_text()
    match = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', text)
    assert match, "cluster/Dockerfile must label its version"
    return match.group(1)


def _images(node) -> list[str]:
    """Every `image` / `*_image` value anywhere in a parsed YAML document."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("image", "head_image", "worker_image") and isinstance(value, str):
                found.append(value)
            else:
                found += _images(value)
    elif isinstance(node, list):
        for item in node:
            found += _images(item)
    return found


def test_dockerfile_pins_its_base_and_its_tag_names_the_pinned_versions():
    text = (REPO / "cluster" / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    assert ":" in base and not base.endswith(":latest"), base
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ray_pin = next(d for d in project["dependencies"] if d.startswith("ray["))
    assert _pinned_tag() == f"{project['version']}-ray{ray_pin.split('==')[1]}"
    assert "ray[default" in ray_pin  # the image installs the project, so ray[default] too


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_cluster_launcher_config_validates_against_rays_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)  # the schema shipped inside the installed ray
    validate_config(prepare_config(config))  # what `ray up` runs: defaults merged, then checked
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"].get("GPU", 0) == 0
    gpu = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert {t["resources"]["GPU"] for t in gpu.values()} >= {1, 4}  # scoring and pretraining
    assert all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in types.values())
    spot = [n for n in gpu if n.endswith(".spot")]
    assert spot and all(gpu[n]["priority"] > gpu[n.replace(".spot", ".ondemand")]["priority"]
                        for n in spot)  # spot first, on-demand fallback
    assert config["idle_timeout_minutes"] > 0
    assert _images(config) == [config["docker"]["image"]]
    assert config["docker"]["image"].endswith(":" + _pinned_tag())
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2 and "disabled" not in starts
    assert "--dashboard-host=127.0.0.1" in starts and "--metrics-export-port=8080" in starts


def test_every_key_of_ray_cluster_yaml_is_commented():
    """Each key line has a comment on the line itself or on the line above."""
    lines = (REPO / "ray_cluster.yaml").read_text().splitlines()
    bare = []
    for i, line in enumerate(lines):
        if re.match(r"^\s*(- )?[\"\w.~/-]+:(\s|$)", line) and "#" not in line:
            above = lines[i - 1].strip() if i else ""
            if not above.startswith("#"):
                bare.append(f"{i + 1}: {line.strip()}")
    assert not bare, "keys without a comment:\n" + "\n".join(bare)


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifests_parse_autoscale_gpus_and_name_the_pinned_image(path):
    (doc,) = list(yaml.safe_load_all(path.read_text()))
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob")
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == "2.60.0" and spec["enableInTreeAutoscaling"] is True
    images = set(_images(doc))
    assert len(images) == 1 and images.pop().endswith(":" + _pinned_tag())
    gpu_groups = [g for g in spec["workerGroupSpecs"]
                  if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]
                  ["limits"]]
    assert gpu_groups and all(g["minReplicas"] == 0 and g["maxReplicas"] >= 1
                              for g in gpu_groups)
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    env = {e["name"]: e for e in head["template"]["spec"]["containers"][0]["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # the token only in a Secret


def test_runtime_env_parses_and_ships_the_checkout_without_local_state():
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == "."
    assert {".git", ".venv"} <= set(env["excludes"])
    assert all(isinstance(v, str) for v in env["env_vars"].values())


def test_no_credentials_in_cluster_files():
    secret = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY|"
                        r"RAY_AUTH_TOKEN=\S|auth_token:\s*['\"]?\w{8}|password\s*[:=]\s*\S",
                        re.I)
    files = [*CLUSTER_YAMLS, *KUBERAY, REPO / "cluster" / "runtime_env.yaml",
             REPO / "cluster" / "Dockerfile", SCRIPT]
    hits = [f"{f.name}: {m.group(0)}" for f in files for m in secret.finditer(f.read_text())]
    assert not hits
    assert not any(":latest" in image for f in [*CLUSTER_YAMLS, *KUBERAY]
                   for image in _images(list(yaml.safe_load_all(f.read_text()))))


# ------------------------------------------------------------- joining / resource checks
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_joining_a_closed_port_fails_at_once_in_one_line_naming_what_was_tried():
    import ray

    from hgnas_ray.config import RayConfig
    from hgnas_ray.distributed.runtime import init_ray
    from hgnas_ray.errors import ClusterError

    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ClusterError) as info:
        init_ray(RayConfig(address=f"127.0.0.1:{port}"))
    message = str(info.value)
    assert time.monotonic() - start < 5 and not ray.is_initialized()
    assert "\n" not in message and f"TCP connection to 127.0.0.1:{port}" in message
    assert "refused" in message.lower()


def test_an_address_that_never_answers_times_out_after_the_limit(monkeypatch):
    from hgnas_ray.distributed import runtime
    from hgnas_ray.errors import ClusterError

    def hang(address, timeout):
        assert timeout == 2.5
        raise TimeoutError("timed out")

    monkeypatch.setattr(runtime.socket, "create_connection", hang)
    monkeypatch.setenv(runtime.CONNECT_TIMEOUT_ENV, "2.5")
    with pytest.raises(ClusterError, match=r"10\.1\.2\.3:6379, which timed out after 2\.5 s"):
        runtime.check_reachable("10.1.2.3")


@pytest.mark.parametrize("address, endpoint", [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("head", ("head", 6379)),
    ("ray://head", ("head", 10001)), ("ray://10.0.0.5:10002", ("10.0.0.5", 10002)),
    ("[::1]:7000", ("::1", 7000)), ("auto", None)])
def test_gcs_endpoint_of_an_address(address, endpoint):
    from hgnas_ray.distributed.runtime import gcs_endpoint

    assert gcs_endpoint(address) == endpoint


def test_a_dashboard_url_is_not_a_cluster_address():
    from hgnas_ray.distributed.runtime import gcs_endpoint
    from hgnas_ray.errors import ClusterError

    with pytest.raises(ClusterError, match="ray job submit"):
        gcs_endpoint("http://127.0.0.1:8265")


@pytest.mark.parametrize("live, launchable, asked, ok", [
    ([0.0, 0.0], [], 0.25, False), ([0.0], [], 1, False), ([0.0], [1.0, 4.0], 1, True),
    ([1.0], [], 0.25, True), ([1.0], [], 2, False), ([0.0], [], 0, True)])
def test_gpu_requests_a_cluster_can_never_meet_are_refused(monkeypatch, live, launchable,
                                                           asked, ok):
    from hgnas_ray.distributed import runtime
    from hgnas_ray.errors import ClusterError

    nodes = [{"Alive": True, "Resources": {"CPU": 1.0, "GPU": g} if g else {"CPU": 1.0}}
             for g in live]
    monkeypatch.setattr(runtime.ray, "nodes", lambda: nodes)
    monkeypatch.setattr(runtime, "_autoscaler_gpus_per_node", lambda: launchable)
    if ok:
        runtime.check_gpus(asked, "corpus scoring")
    else:
        with pytest.raises(ClusterError, match=r"corpus scoring asks for .* GPU.*--num-gpus 0"):
            runtime.check_gpus(asked, "corpus scoring")


# ------------------------------------------------------------------ the local cluster
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
       "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
TINY = ["--task", "digits", "--batch-size", "16", "--skeleton-channels", "4",
        "--skeleton-cells", "1", "--no-progress"]
RAY_BIN = str(Path(sys.executable).parent / "ray")


class LocalCluster:
    """cluster/local_cluster.sh with its own state folder (short: Ray's socket paths)."""

    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="hgnas_lc_", dir="/tmp"))
        shutil.rmtree(self.state)  # the script makes it, with its marker
        self.env = {**ENV, "HGNAS_LOCAL_CLUSTER_DIR": str(self.state)}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout)

    def read(self, name: str) -> str:
        return (self.state / name).read_text().strip()

    @property
    def dashboard(self) -> str:
        return self.read("dashboard")

    def pids(self) -> set[int]:
        """Every live process whose command line names the state folder."""
        found = set()
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if str(self.state) in (proc / "cmdline").read_bytes().decode(errors="ignore"):
                        found.add(int(proc.name))
                except OSError:
                    continue
        return found

    def submit(self, *entrypoint: str, wait: bool = True, timeout: float = 600,
               env_vars: dict[str, str] | None = None, working_dir: Path | None = None
               ) -> subprocess.CompletedProcess | str:
        cmd = [RAY_BIN, "job", "submit", "--address", self.dashboard]
        if working_dir is not None:
            cmd += ["--working-dir", str(working_dir)]
        if env_vars:
            cmd += ["--runtime-env-json", json.dumps({"env_vars": env_vars})]
        if not wait:
            out = subprocess.run([*cmd, "--no-wait", "--", *entrypoint], env=self.env,
                                 text=True, capture_output=True, timeout=120, cwd=REPO)
            assert out.returncode == 0, out.stderr
            return re.search(r"raysubmit_\w+", out.stdout + out.stderr).group(0)
        return subprocess.run([*cmd, "--", *entrypoint], env=self.env, text=True,
                              capture_output=True, timeout=timeout, cwd=REPO)

    def node_of(self, pid: int) -> str | None:
        """The node (head, worker-1, ...) whose `ray start` process `pid` descends from."""
        roots = {int(self.read(f.name)): f.stem for f in self.state.glob("*.pid")}
        while pid > 1:
            if pid in roots:
                return roots[pid]
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return None
        return None

    def actor_nodes(self, class_name: str) -> list[str]:
        """The nodes running a live actor process of `class_name` (its process title)."""
        nodes = []
        for proc in Path("/proc").iterdir():
            try:
                title = (proc / "cmdline").read_bytes().decode(errors="ignore")
            except OSError:
                continue
            if proc.name.isdigit() and title.startswith("ray::") and class_name in title:
                nodes.append(str(self.node_of(int(proc.name))))
        return sorted(nodes)

    def job(self, submission_id: str) -> dict:
        return _get_json(f"{self.dashboard}/api/jobs/{submission_id}")


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _build(folder: Path, n: int, shard_size: int, seed: int) -> list[str]:
    from hgnas_ray.corpus import CorpusSpec, build_corpus, cell_shards, read_cell_shard

    build_corpus(folder, CorpusSpec("cell", n, seed=seed, shard_size=shard_size), progress=False)
    return [h for p in cell_shards(folder) for h in read_cell_shard(p, ["hash"])["hash"]
            .to_pylist()]


def _scored_hashes(folder: Path) -> Counter:
    from hgnas_ray.corpus import list_shards

    return Counter(h for p in list_shards(folder)
                   for h in pq.read_table(p, columns=["hash"])["hash"].to_pylist())


@pytest.fixture(scope="module")
def cluster():
    """A head and 2 worker nodes, 1 CPU each; stopped (and checked gone) at the end."""
    local = LocalCluster()
    started = local.run("start", "2")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"address: {local.read('address')}" in started.stdout
        yield local
    finally:
        stopped = local.run("stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        time.sleep(1)
        assert not local.pids(), "processes of the local cluster left after stop"
        assert not local.state.exists()




@pytest.mark.slow
@pytest.mark.ray
def test_local_cluster_reports_its_nodes_and_refuses_a_second_start(cluster):
    status = cluster.run("status")
    assert status.returncode == 0, status.stdout
    assert [line.split(":")[0] for line in status.stdout.splitlines()[2:]] == [
        "head", "worker-1", "worker-2"]
    before = cluster.pids()
    again = cluster.run("start", "1")
    assert again.returncode == 1 and "already running" in again.stderr
    assert "nothing started" in again.stderr and cluster.pids() == before
    nodes = _get_json(f"{cluster.dashboard}/nodes?view=summary")  # the dashboard API, localhost
    alive = [n for n in nodes["data"]["summary"] if n["raylet"]["state"] == "ALIVE"]
    assert len(alive) == 3


@pytest.mark.slow
@pytest.mark.ray
def test_job_submit_scores_a_corpus_on_every_node_and_exports_metrics(cluster, tmp_path):
    corpus = tmp_path / "corpus"
    hashes = _build(corpus, 36, shard_size=6, seed=3)
    # Ray Data hands batches to the actors that are up; on a loaded machine the last of three
    # actors may start after the others have scored a small corpus, so the pool is told to
    # wait for all of its actors first (a Ray Data setting, read by the job's driver).
    out = cluster.submit("python", "jobs/score_corpus.py", "--corpus", str(corpus), *TINY,
                         "--rows-per-batch", "3", "--concurrency", "3",
                         env_vars={"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "600"})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "36 cells scored (0 failed)" in log
    per_node = re.search(r"cells scored per node \((\d) node\(s\)\): (.*)", log)
    assert per_node and per_node.group(1) == "3", log[-3000:]  # 3 actors, one per 1-CPU node
    counts = [int(c) for c in re.findall(r": (\d+)", per_node.group(2))]
    assert sum(counts) == 36 and min(counts) > 0
    assert _scored_hashes(corpus / "scores") == Counter(hashes)
    # the dashboard's job API lists the job as succeeded
    submission = re.search(r"raysubmit_\w+", log).group(0)
    jobs = {j["submission_id"]: j for j in _get_json(f"{cluster.dashboard}/api/jobs/")}
    assert jobs[submission]["status"] == "SUCCEEDED"
    # every node's metrics endpoint exports the project's counter with that node's cells
    exported = {}
    for node in ("head", "worker-1", "worker-2"):
        port = cluster.read(f"{node}.metrics_port")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
        values = re.findall(rb"^ray_hgnas_corpus_cells_scored_total\{[^}]*\} ([0-9.]+)$", text,
                            re.M)
        exported[node] = sum(float(v) for v in values)
    assert sorted(exported.values()) == sorted(float(c) for c in counts), exported


@pytest.mark.slow
@pytest.mark.ray
def test_job_submit_runs_the_search_job_with_corpus_scoring_on_every_node(cluster, tmp_path):
    """The whole search pipeline (the tiny digits config of tests/test_search_job.py) submitted
    with `ray job submit --working-dir` to a head and 2 worker nodes: it succeeds, exports, and
    its corpus stage scores cells on all 3 nodes (one scoring actor per 1-CPU node)."""
    from test_search_job import TINY

    config = {**TINY, "corpus": {**TINY["corpus"], "size": 48, "shard_size": 8,
                                 "rows_per_batch": 4, "concurrency": 3}}
    path = tmp_path / "tiny_multinode.yaml"
    path.write_text(yaml.safe_dump(config))
    storage = tmp_path / "storage"
    start = time.monotonic()
    # as in the scoring test: Ray Data waits for all three actors before handing out batches
    out = cluster.submit("python", "jobs/search.py", "--config", str(path),
                         "--set", "ray.address=auto", "--set", f"storage_path={storage}",
                         working_dir=REPO, timeout=2400,
                         env_vars={"RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "600",
                                   "HGNAS_DATA": os.environ.get("HGNAS_DATA", ""),
                                   "OMP_NUM_THREADS": "1"})
    log = out.stdout + out.stderr
    print(f"search job on 3 nodes: {time.monotonic() - start:.0f} s")
    assert out.returncode == 0, log[-4000:]
    submission = re.search(r"raysubmit_\w+", log).group(0)
    assert cluster.job(submission)["status"] == "SUCCEEDED"
    per_node = re.search(r"cells scored per node \((\d) node\(s\)\): (.*)", log)
    assert per_node, log[-4000:]
    counts = dict(re.findall(r"(\w{8}): (\d+)", per_node.group(2)))
    assert per_node.group(1) == "3" and len(counts) == 3, per_node.group(0)
    assert sum(int(c) for c in counts.values()) == 48 and min(map(int, counts.values())) > 0
    alive = {n["node_id"][:8] for n in _get_json(f"{cluster.dashboard}/api/v0/nodes")
             ["data"]["result"]["result"] if n["state"] == "ALIVE"}
    assert set(counts) == alive, (counts, alive)  # the cluster's three nodes, each named once
    run = storage / TINY["run_name"]
    assert (run / "report.md").is_file()
    metrics = json.loads((run / "export" / "metrics.json").read_text())
    assert metrics, "empty export/metrics.json"
    assert f"run folder: {run}" in log


@pytest.mark.slow
@pytest.mark.ray
def test_a_worker_node_lost_mid_scoring_loses_no_cell_and_scores_none_twice(cluster, tmp_path):
    """Two scoring actors on three 1-CPU nodes; the raylet of a worker node holding one of
    them is SIGKILLed after the first shard is written. Ray restarts the actor on the free
    node and retries its batch, and the job ends with every cell scored exactly once."""
    corpus = tmp_path / "corpus"
    hashes = _build(corpus, 120, shard_size=6, seed=4)
    submission = cluster.submit("python", "jobs/score_corpus.py", "--corpus", str(corpus),
                                *TINY, "--rows-per-batch", "2", "--concurrency", "2",
                                wait=False)
    deadline = time.monotonic() + 600
    while not list((corpus / "scores").glob("part-*.parquet")):
        assert time.monotonic() < deadline, "no shard scored in time"
        assert cluster.job(submission)["status"] in ("PENDING", "RUNNING")
        time.sleep(0.5)
    hosts: list = []
    while not any(h.startswith("worker-") for h in hosts):  # a scorer on a worker node
        assert time.monotonic() < deadline, f"no scoring actor on a worker node: {hosts}"
        assert cluster.job(submission)["status"] == "RUNNING", f"job ended first: {hosts}"
        # found by process title and ancestry (Ray's state API lags minutes behind here)
        hosts = cluster.actor_nodes("RayCorpusScorer")
        time.sleep(0.2)
    victim = next(h for h in hosts if h.startswith("worker-"))
    killed = cluster.run("kill-node", victim.split("-")[1])
    assert killed.returncode == 0, killed.stderr
    written_at_kill = len(list((corpus / "scores").glob("part-*.parquet")))
    assert written_at_kill < len(hashes) // 6, "the kill came after the last shard"
    while cluster.job(submission)["status"] in ("PENDING", "RUNNING"):
        assert time.monotonic() < deadline, "job did not finish"
        time.sleep(2)
    job = cluster.job(submission)
    logs = _get_json(f"{cluster.dashboard}/api/jobs/{submission}/logs")["logs"]
    assert job["status"] == "SUCCEEDED", logs[-3000:]
    assert "120 cells scored (0 failed)" in logs
    scored = _scored_hashes(corpus / "scores")
    assert scored == Counter(hashes)  # every cell, each exactly once
    assert set(scored.values()) == {1}
    status = cluster.run("status")
    assert status.returncode == 3 and f"{victim}: down" in status.stdout


@pytest.mark.slow
def test_a_job_joining_a_closed_port_ends_in_one_line(tmp_path):
    port = _closed_port()
    out = subprocess.run([sys.executable, str(REPO / "jobs" / "score_corpus.py"),
                          "--smoke-test", "--address", f"127.0.0.1:{port}"], env=ENV,
                         text=True, capture_output=True, timeout=120)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "cannot reach the Ray cluster" in lines[0], out.stderr
