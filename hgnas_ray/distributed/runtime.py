"""Starting or joining Ray, and checking that the cluster can run what a stage asks for."""

from __future__ import annotations

import logging
import os
import socket
import time

import ray

from hgnas_ray.config import RayConfig
from hgnas_ray.errors import ClusterError

PACKAGE_LOGGER = "hgnas_ray"
CONNECT_TIMEOUT_ENV = "HGNAS_RAY_CONNECT_TIMEOUT_S"
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_GCS_PORT = 6379
DEFAULT_CLIENT_PORT = 10001


def init_ray(config: RayConfig) -> None:
    """Join `config.address` (a cluster, e.g. under `ray job submit`) or start Ray in-process.

    Before joining, the address is checked with one TCP connection (timeout
    `HGNAS_RAY_CONNECT_TIMEOUT_S`, default 10 s), so an unreachable address is one
    `ClusterError` line saying what was tried instead of Ray's minutes of retries.

    Ray's own lines show only when the package logs at DEBUG (the entry points' --verbose):
    otherwise its INFO and WARNING lines (e.g. the token-authentication notice), the workers'
    stdout/stderr (they stay in the session's log files, /tmp/ray/session_latest/logs), Ray
    Data's INFO lines and its progress-bar hints are hidden, so a user sees the package's lines
    and Ray's errors.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    verbose = quiet_ray_libraries()
    quiet = {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}
    if config.address:
        check_reachable(config.address)
        try:
            ray.init(address=config.address, **quiet)
        except (ConnectionError, TimeoutError, RuntimeError, ray.exceptions.RayError) as err:
            raise ClusterError(f"could not join the Ray cluster at {config.address}: "
                               f"{type(err).__name__}: {_first_line(err)}; the TCP port answers, "
                               "so check that it is the head's GCS port (ray status there), that "
                               "this Ray version matches the cluster's, and RAY_AUTH_MODE / the "
                               "auth token (cluster/README.md)") from None
        return
    ray.init(num_cpus=config.num_cpus, include_dashboard=config.include_dashboard, **quiet)


def quiet_ray_libraries() -> bool:
    """Unless the package logs at DEBUG (--verbose), hide Ray Data's INFO lines and its
    progress-bar hints; call before ray.data loads. Returns whether logging is verbose."""
    verbose = logging.getLogger(PACKAGE_LOGGER).isEnabledFor(logging.DEBUG)
    if not verbose:
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # read when ray.data loads
        # Ray Data's hints on how to turn its progress bars on or off (a WARNING with
        # --no-progress)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    return verbose


def connect_timeout_s() -> float:
    value = os.environ.get(CONNECT_TIMEOUT_ENV, "")
    try:
        timeout = float(value) if value else DEFAULT_CONNECT_TIMEOUT_S
    except ValueError:
        raise ClusterError(f"{CONNECT_TIMEOUT_ENV} must be a number of seconds; got "
                           f"{value!r}") from None
    if not timeout > 0:
        raise ClusterError(f"{CONNECT_TIMEOUT_ENV} must be > 0; got {value!r}")
    return timeout


def check_reachable(address: str, timeout_s: float | None = None) -> None:
    """Raise `ClusterError` unless a TCP connection to the GCS (or Ray client) port of
    `address` opens within the timeout. "auto"/"local" are left to Ray."""
    endpoint = gcs_endpoint(address)
    if endpoint is None:
        return
    host, port = endpoint
    timeout_s = connect_timeout_s() if timeout_s is None else timeout_s
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except TimeoutError:
        why = f"timed out after {timeout_s:g} s"
    except socket.gaierror as err:
        why = f"host name not resolved ({err.strerror})"
    except OSError as err:
        why = f"failed after {time.monotonic() - start:.1f} s: {err.strerror or err}"
    raise ClusterError(f"cannot reach the Ray cluster at {address}: tried a TCP connection to "
                       f"{host}:{port}, which {why} (limit {timeout_s:g} s, "
                       f"{CONNECT_TIMEOUT_ENV}); check the address (--address, ray.address or "
                       f"RAY_ADDRESS), that the head node is up, and that port {port} is open "
                       "to this machine")


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that `ray.init(address=...)` connects to first; None for "auto"/"local".

    `host:port` and `host` (port 6379) are the GCS; `ray://host[:port]` the Ray client server
    (port 10001). A dashboard URL (http://...:8265) is refused: it is for `ray job submit`.
    """
    text = address.strip()
    if text.lower() in ("auto", "local"):
        return None
    if text.startswith(("http://", "https://")):
        raise ClusterError(f"{address} is a dashboard / job-submission address; to join a "
                           "cluster pass its GCS address host:6379 (or ray://host:10001), and "
                           f"submit jobs to {address} with `ray job submit --address {address}`")
    port = DEFAULT_GCS_PORT
    if text.startswith("ray://"):
        text, port = text[len("ray://"):], DEFAULT_CLIENT_PORT
    host, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and host and not host.endswith(":"):  # "[::1]:6379", "h:6379"
        text, port = host, int(tail)
    host = text.strip("[]")
    if not host or not 0 < port < 65536:
        raise ClusterError(f"cannot parse the Ray address {address!r}; expected host:port "
                           "(the head's GCS, e.g. 10.0.0.5:6379), ray://host:10001 or auto")
    return host, port


def check_gpus(num_gpus: float, what: str) -> None:
    """Refuse a per-worker GPU request that this cluster can never meet (Ray would wait forever).

    A request is possible when a live node, or a node type the autoscaler may launch, has at
    least `num_gpus` GPUs (fractions of one GPU share it). Ray must be initialised.
    """
    if num_gpus <= 0:
        return
    live = [n.get("Resources", {}).get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    launchable = _autoscaler_gpus_per_node()
    best = max([*live, *launchable], default=0.0)
    if best >= num_gpus:
        return
    have = (f"the Ray cluster's largest node has {best:g} GPU(s)" if best else
            "the Ray cluster has no GPUs" + ("" if launchable else
                                             " and no autoscaling node type with GPUs"))
    raise ClusterError(f"{what} asks for {num_gpus:g} GPU(s) per worker, but {have} "
                       f"({len(live)} live node(s)); pass 0 GPUs to run on CPUs (e.g. "
                       "--num-gpus 0), or join a cluster with GPU workers (cluster/README.md)")


def _autoscaler_gpus_per_node() -> list[float]:
    """GPUs per node of the node types the autoscaler may still launch (empty without one)."""
    try:
        from ray._private.state import state  # the config the autoscaler publishes to the GCS

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001  private API: no config means no autoscaler to count on
        return []
    if config is None:
        return []
    return [float(group.resources.get("GPU", 0)) for group in config.node_group_configs
            if group.max_count != 0]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no detail"
