#!/usr/bin/env bash
# A Ray cluster of a head and N worker nodes on this one machine, for trying multi-node runs
# (scheduling across nodes, a node lost mid-stage) without a cloud account.
#
#   cluster/local_cluster.sh start N     # head + N worker nodes; prints the address to submit to
#   cluster/local_cluster.sh status      # which of its nodes are up; exit 0 all, 3 some, 1 none
#   cluster/local_cluster.sh stop        # stops exactly the processes this script started
#   cluster/local_cluster.sh kill-node I # SIGKILL worker I's raylet (1..N): a node lost mid-run
#
# Each node is one `ray start --block` process, started with setsid so that it leads its own
# process group; the processes of a node (raylet, GCS, dashboard, agents, workers) are its
# children (Ray gives each worker process a group of its own). `stop` signals those groups and
# descendants only (SIGTERM, then SIGKILL after a grace period), never `ray stop` (which stops
# every Ray instance of the machine: tests and other users' jobs). Every node has its own
# --temp-dir under the state folder, advertises 127.0.0.1, and gets free ports picked at start
# (GCS, dashboard, client, agent, metrics), so it coexists with other Ray instances here.
# The dashboard binds to 127.0.0.1; the GCS, raylet and agent ports listen on every interface
# (Ray has no option to bind them to one address): on a machine others can reach, firewall them.
#
# Token authentication is OFF (RAY_AUTH_MODE=disabled) because the cluster listens on loopback
# only and `ray job submit` then needs no token; submit with RAY_AUTH_MODE=disabled too. Never do
# this on a real cluster (cluster/README.md, Security).
#
# Environment (all optional):
#   HGNAS_LOCAL_CLUSTER_DIR  state folder (default /tmp/hgnas_lc_<uid>; keep it short: Ray's
#                            socket paths must stay under 107 characters)
#   HGNAS_NODE_CPUS          logical CPUs per node (default 1); HGNAS_HEAD_CPUS for the head
#                            (default: HGNAS_NODE_CPUS)
#   HGNAS_NODE_OBJECT_STORE  object store bytes per node (default 150000000)
#   RAY_BIN                  the `ray` executable (default: the repository's .venv, else PATH)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${HGNAS_LOCAL_CLUSTER_DIR:-/tmp/hgnas_lc_$(id -u)}
NODE_CPUS=${HGNAS_NODE_CPUS:-1}
HEAD_CPUS=${HGNAS_HEAD_CPUS:-$NODE_CPUS}
OBJECT_STORE=${HGNAS_NODE_OBJECT_STORE:-150000000}
if [[ -z "${RAY_BIN:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/ray" ]]; then RAY_BIN=$REPO/.venv/bin/ray; else RAY_BIN=$(command -v ray || true); fi
fi
[[ -n "$RAY_BIN" && -x "$RAY_BIN" ]] || { echo "local_cluster.sh: error: no ray executable (set RAY_BIN or run make install)" >&2; exit 2; }
BIN_DIR=$(dirname "$RAY_BIN")
PYTHON=$BIN_DIR/python
[[ -x "$PYTHON" ]] || PYTHON=$(command -v python3)
# Jobs submitted to this cluster run `python` from the same environment as Ray.
export PATH="$BIN_DIR:$PATH" RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# No drain wait on SIGTERM (Ray's default waits for Serve proxies to quiesce): stop is immediate.
export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0
STARTUP_TIMEOUT_S=${HGNAS_LOCAL_CLUSTER_TIMEOUT_S:-120}
MARKER=$STATE/.hgnas_local_cluster

die() { echo "local_cluster.sh: error: $*" >&2; exit 2; }

# Node names in start order: head, worker-1, ..., from the pid files.
node_names() {
  [[ -f $STATE/head.pid ]] && echo head
  local f
  for f in "$STATE"/worker-*.pid; do [[ -e $f ]] && basename "$f" .pid; done | sort -t- -k2 -n
  return 0
}

# True when the process recorded for node $1 is alive and is the `ray start` we launched
# (its command line names the node's temp dir), so a recycled PID is never signalled.
node_alive() {
  local pid
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--temp-dir $STATE/$1\b\|--temp-dir=$STATE/$1\b"
}

# A process that exists and is not a zombie.
running() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

free_ports() {  # $1 distinct free TCP ports on 127.0.0.1
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
}

# Wait until node $1 logged that its runtime started; fail with the log's tail if it died.
wait_started() {
  local name=$1 deadline=$((SECONDS + STARTUP_TIMEOUT_S))
  until grep -q "Ray runtime started" "$STATE/$name.log" 2>/dev/null; do
    if ! running "$(cat "$STATE/$name.pid")"; then  # (not node_alive: the exec may not be done)
      tail -n 20 "$STATE/$name.log" >&2 || true
      stop_nodes >/dev/null
      die "node $name exited during start-up (log above; full log was $STATE/$name.log)"
    fi
    if ((SECONDS > deadline)); then
      stop_nodes >/dev/null
      die "node $name did not start within ${STARTUP_TIMEOUT_S} s"
    fi
    sleep 0.5
  done
}

# start_node NAME CPUS AGENT_PORT METRICS_PORT [ray start options...]
start_node() {
  local name=$1 cpus=$2 agent=$3 metrics=$4
  shift 4
  mkdir -p "$STATE/$name"
  # setsid: the node leads its own process group (stop signals that group, and nothing else)
  setsid "$RAY_BIN" start --block --node-ip-address 127.0.0.1 --num-cpus "$cpus" --num-gpus 0 \
    --object-store-memory "$OBJECT_STORE" --min-worker-port 0 --max-worker-port 0 \
    --dashboard-agent-listen-port "$agent" --metrics-export-port "$metrics" \
    --temp-dir "$STATE/$name" --labels "hgnas-node=$name" --disable-usage-stats "$@" \
    </dev/null >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
  echo "$metrics" >"$STATE/$name.metrics_port"
}

cmd_start() {
  local n=${1:-}
  [[ $n =~ ^[0-9]+$ ]] || die "start needs the number of worker nodes, e.g. 'start 2'; got '${n}'"
  ((n <= 16)) || die "start $n: at most 16 worker nodes on one machine"
  local running=()
  for name in $(node_names); do node_alive "$name" && running+=("$name"); done
  if ((${#running[@]})); then
    echo "local_cluster.sh: a local cluster is already running (${running[*]}; address" \
      "$(cat "$STATE/address" 2>/dev/null || echo unknown), state in $STATE); nothing started." \
      "Stop it first: cluster/local_cluster.sh stop" >&2
    exit 1
  fi
  [[ ! -e $STATE || -f $MARKER ]] || die "$STATE exists and was not made by this script; set HGNAS_LOCAL_CLUSTER_DIR"
  rm -rf "$STATE"
  mkdir -p "$STATE"
  touch "$MARKER"
  local ports
  read -r -a ports <<<"$(free_ports $((5 + 2 * n)))"
  local gcs=${ports[0]} dashboard=${ports[1]} client=${ports[2]}
  start_node head "$HEAD_CPUS" "${ports[3]}" "${ports[4]}" --head --port "$gcs" \
    --dashboard-host 127.0.0.1 --dashboard-port "$dashboard" --ray-client-server-port "$client"
  echo "127.0.0.1:$gcs" >"$STATE/address"
  echo "http://127.0.0.1:$dashboard" >"$STATE/dashboard"
  wait_started head
  local i
  for ((i = 1; i <= n; i++)); do
    start_node "worker-$i" "$NODE_CPUS" "${ports[$((3 + 2 * i))]}" "${ports[$((4 + 2 * i))]}" \
      --address "127.0.0.1:$gcs"
  done
  for ((i = 1; i <= n; i++)); do wait_started "worker-$i"; done
  echo "local Ray cluster: head ($HEAD_CPUS CPU) + $n worker node(s) ($NODE_CPUS CPU each) on 127.0.0.1"
  echo "address: 127.0.0.1:$gcs"
  echo "dashboard: http://127.0.0.1:$dashboard"
  echo "submit: RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:$dashboard -- python jobs/score_corpus.py --smoke-test"
  echo "join:   RAY_AUTH_MODE=disabled python jobs/score_corpus.py --smoke-test --address 127.0.0.1:$gcs"
  echo "stop:   cluster/local_cluster.sh stop"
}

# The pids of process $1 and of all its descendants. Ray puts each worker process (actors,
# tasks) in a process group of its own, so a node's workers are found as its descendants.
tree_pids() {
  ps -eo pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      keep[root] = 1; changed = 1
      while (changed) {
        changed = 0
        for (i in pids) { p = pids[i]; if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; changed = 1 } }
      }
      for (p in keep) print p
    }'
}

# Stop each running node: SIGTERM to its `ray start --block` process, workers first (it stops
# its node's processes and exits), then SIGKILL whatever is left of its process group and
# descendants (collected before signalling) after the grace period.
stop_nodes() {
  local name pid pids=() stopped=() names
  names=$(node_names | sort -r)  # worker-N .. worker-1, then head
  for name in $names; do
    if node_alive "$name"; then
      pid=$(cat "$STATE/$name.pid")
      pids+=($(tree_pids "$pid") $(pgrep -g "$pid" || true))
      stopped=("$name" "${stopped[@]}")
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + ${HGNAS_LOCAL_CLUSTER_GRACE_S:-30})) left=()
  while ((SECONDS < deadline)); do
    left=()
    for pid in "${pids[@]}"; do running "$pid" && left+=("$pid"); done
    ((${#left[@]})) || break
    sleep 0.5
  done
  ((${#left[@]})) && kill -KILL "${left[@]}" 2>/dev/null || true  # only those still there
  echo "${stopped[*]}"
}

cmd_stop() {
  if [[ ! -d $STATE ]]; then
    echo "no local cluster to stop ($STATE does not exist)"
    return 0
  fi
  [[ -f $MARKER ]] || die "$STATE was not made by this script; not touching it"
  local stopped
  stopped=$(stop_nodes)
  rm -rf "$STATE"
  if [[ -n $stopped ]]; then echo "stopped: $stopped"; else echo "no node was running; state removed"; fi
}

cmd_status() {
  local names up=0 total=0 name
  names=$(node_names)
  if [[ -z $names ]]; then
    echo "no local cluster (state folder $STATE)"
    return 1
  fi
  echo "address: $(cat "$STATE/address" 2>/dev/null || echo unknown)"
  echo "dashboard: $(cat "$STATE/dashboard" 2>/dev/null || echo unknown)"
  for name in $names; do
    total=$((total + 1))
    if node_alive "$name"; then
      up=$((up + 1))
      echo "$name: up (pid $(cat "$STATE/$name.pid"), metrics port $(cat "$STATE/$name.metrics_port"))"
    else
      echo "$name: down"
    fi
  done
  ((up == total)) && return 0
  ((up == 0)) && return 1
  return 3
}

cmd_kill_node() {
  local i=${1:-} name pid raylet
  [[ $i =~ ^[0-9]+$ ]] || die "kill-node needs a worker number (1..N); got '${i}'"
  name=worker-$i
  node_alive "$name" || die "$name is not running"
  pid=$(cat "$STATE/$name.pid")
  raylet=$(pgrep -g "$pid" -f "raylet/raylet" | head -n 1) || true
  [[ -n $raylet ]] || die "no raylet found in $name's process group $pid"
  kill -KILL "$raylet"
  echo "killed the raylet of $name (pid $raylet); its other processes exit with it"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kill-node) shift; cmd_kill_node "$@" ;;
  *) echo "usage: cluster/local_cluster.sh start N | stop | status | kill-node I" >&2; exit 2 ;;
esac
