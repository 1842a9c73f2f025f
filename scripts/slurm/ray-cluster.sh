# shellcheck shell=bash
# Start and stop a Ray cluster across the nodes of a SLURM allocation, and run a command with
# SIGTERM/SIGINT forwarded to it. Sourced by train.sbatch and evaluate.sbatch; defines functions
# and nothing else.
#
# Inputs (variables the sbatch scripts set before calling the functions):
#   RAY_PORT, RAY_HEAD_IP, RAY_START_ARGS, RAY_WAIT_TIMEOUT, RAY_WAIT_POLL, RAY_STOP_TIMEOUT,
#   CPUS_PER_NODE, GPUS_PER_NODE, WORKERS_PER_NODE (empty: taken from the allocation).
# Outputs (set by the functions):
#   LS_NODES (array), LS_HEAD_NODE, LS_CPUS_PER_NODE, LS_GPUS_PER_NODE, LS_WORKERS_PER_NODE,
#   LS_NUM_WORKERS, LS_CPUS_PER_WORKER, LS_RAY_ADDRESS (also exported as RAY_ADDRESS),
#   LS_CLUSTER_OVERRIDES (array of Hydra overrides), LS_FORWARDED_SIGNAL.

_LS_RAY_STEP_PIDS=()
_LS_RAY_STEP_NODES=()
_LS_CHILD_PID=""
_LS_SIGNALLED=0
LS_FORWARDED_SIGNAL=""

ls_log() {
    echo "[ls-slurm $(date '+%H:%M:%S')] $*"
}

# ls_die MESSAGE [STATUS]: print MESSAGE to stderr and exit (the EXIT trap then stops Ray).
ls_die() {
    echo "[ls-slurm] error: $1" >&2
    exit "${2:-1}"
}

_ls_require_count() {
    # _ls_require_count NAME VALUE MIN: VALUE must be an integer >= MIN.
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < $3)); then
        ls_die "$1 must be an integer >= $3, got '$2'"
    fi
}

# ls_slurm_layout: the nodes of the allocation and the resources of each, from SLURM's variables
# unless CPUS_PER_NODE / GPUS_PER_NODE / WORKERS_PER_NODE are set.
ls_slurm_layout() {
    if [[ -z ${SLURM_JOB_NODELIST:-} ]]; then
        ls_die "SLURM_JOB_NODELIST is unset: run this script with sbatch (or inside salloc)" 2
    fi
    local hosts
    hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST") ||
        ls_die "'scontrol show hostnames $SLURM_JOB_NODELIST' failed"
    mapfile -t LS_NODES <<<"$hosts"
    if [[ ${#LS_NODES[@]} -eq 0 || -z ${LS_NODES[0]} ]]; then
        ls_die "'scontrol show hostnames $SLURM_JOB_NODELIST' listed no nodes"
    fi
    LS_HEAD_NODE=${LS_NODES[0]}

    LS_CPUS_PER_NODE=${CPUS_PER_NODE:-${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}}
    _ls_require_count "CPUS_PER_NODE (or SLURM_CPUS_PER_TASK)" "$LS_CPUS_PER_NODE" 1
    local gpus=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-0}}}
    LS_GPUS_PER_NODE=${gpus##*:} # "a100:4" -> 4
    _ls_require_count "GPUS_PER_NODE (or SLURM_GPUS_ON_NODE)" "$LS_GPUS_PER_NODE" 0

    if [[ -n ${WORKERS_PER_NODE:-} ]]; then
        LS_WORKERS_PER_NODE=$WORKERS_PER_NODE
    elif ((LS_GPUS_PER_NODE > 0)); then
        LS_WORKERS_PER_NODE=$LS_GPUS_PER_NODE
    else
        LS_WORKERS_PER_NODE=1
    fi
    _ls_require_count WORKERS_PER_NODE "$LS_WORKERS_PER_NODE" 1
    if ((LS_GPUS_PER_NODE > 0 && LS_WORKERS_PER_NODE > LS_GPUS_PER_NODE)); then
        ls_die "WORKERS_PER_NODE=$LS_WORKERS_PER_NODE exceeds the $LS_GPUS_PER_NODE GPUs per node (one GPU per worker)"
    fi
    if ((LS_WORKERS_PER_NODE > LS_CPUS_PER_NODE)); then
        ls_die "WORKERS_PER_NODE=$LS_WORKERS_PER_NODE exceeds the $LS_CPUS_PER_NODE CPUs per node"
    fi
    LS_NUM_WORKERS=$((${#LS_NODES[@]} * LS_WORKERS_PER_NODE))
    LS_CPUS_PER_WORKER=$((LS_CPUS_PER_NODE / LS_WORKERS_PER_NODE))
    ls_log "nodes: ${LS_NODES[*]} (head ${LS_HEAD_NODE}); per node ${LS_CPUS_PER_NODE} CPUs," \
        "${LS_GPUS_PER_NODE} GPUs, ${LS_WORKERS_PER_NODE} workers; ${LS_NUM_WORKERS} workers in all"
}

# ls_cluster_overrides: the Hydra overrides that point ls-train / ls-evaluate at this cluster.
ls_cluster_overrides() {
    local resources="{CPU:${LS_CPUS_PER_WORKER}}" use_gpu=false
    if ((LS_GPUS_PER_NODE > 0)); then
        resources="{CPU:${LS_CPUS_PER_WORKER},GPU:1}"
        use_gpu=true
    fi
    # shellcheck disable=SC2034  # read by the sbatch scripts
    LS_CLUSTER_OVERRIDES=(
        "cluster.address=${LS_RAY_ADDRESS}"
        "cluster.num_workers=${LS_NUM_WORKERS}"
        "cluster.use_gpu=${use_gpu}"
        "cluster.resources_per_worker=${resources}"
    )
}

# _ls_srun_ray NODE RAY_START_OPTION...: `ray start ... --block` as a background job step on NODE.
_ls_srun_ray() {
    local node=$1
    shift
    local step=(srun --nodes=1 --ntasks=1 --cpus-per-task="$LS_CPUS_PER_NODE" --nodelist="$node")
    if ((LS_GPUS_PER_NODE > 0)); then
        step+=(--gpus-per-node="$LS_GPUS_PER_NODE")
    fi
    local extra=()
    read -r -a extra <<<"${RAY_START_ARGS:-}"
    ls_log "starting Ray on ${node}: ray start $*"
    "${step[@]}" ray start "$@" --num-cpus="$LS_CPUS_PER_NODE" --num-gpus="$LS_GPUS_PER_NODE" \
        "${extra[@]}" --block &
    _LS_RAY_STEP_PIDS+=("$!")
    _LS_RAY_STEP_NODES+=("$node")
}

# The node count check, run with the environment's python: argv = address, expected nodes,
# timeout (s), poll interval (s). Exits 0 once `expected` nodes are alive, 1 on timeout.
_LS_RAY_WAIT_PY='
import sys
import time

import ray

address, expected, timeout, poll = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout
while True:
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        break
    except Exception as err:  # the head is not up yet (ConnectionError, RpcError, ...)
        if time.monotonic() > deadline:
            sys.exit(f"[ls-slurm] error: no Ray cluster answered at {address} within {timeout:g} s: {err}")
        time.sleep(poll)
alive = 0
while True:
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    if alive >= expected:
        print(f"[ls-slurm] Ray cluster at {address} has {alive}/{expected} nodes", flush=True)
        break
    if time.monotonic() > deadline:
        ray.shutdown()
        sys.exit(f"[ls-slurm] error: timed out after {timeout:g} s with {alive}/{expected} Ray nodes alive "
                 f"at {address} (raise RAY_WAIT_TIMEOUT, or see the ray start output above)")
    time.sleep(poll)
ray.shutdown()
'

# ls_ray_wait_for_nodes N: wait until N nodes have joined; fail early when a `ray start` step exits.
ls_ray_wait_for_nodes() {
    local expected=$1 poll=${RAY_WAIT_POLL:-5}
    python -c "$_LS_RAY_WAIT_PY" "$LS_RAY_ADDRESS" "$expected" "${RAY_WAIT_TIMEOUT:-300}" "$poll" &
    local waiter=$! i rc
    local give_up=$((SECONDS + ${RAY_WAIT_TIMEOUT:-300} + 60))
    while kill -0 "$waiter" 2>/dev/null; do
        if ((SECONDS > give_up)); then
            kill "$waiter" 2>/dev/null || true
            ls_die "the Ray node check at ${LS_RAY_ADDRESS} hung past RAY_WAIT_TIMEOUT=${RAY_WAIT_TIMEOUT:-300} s"
        fi
        for i in "${!_LS_RAY_STEP_PIDS[@]}"; do
            if ! kill -0 "${_LS_RAY_STEP_PIDS[$i]}" 2>/dev/null; then
                kill "$waiter" 2>/dev/null || true
                rc=0
                wait "${_LS_RAY_STEP_PIDS[$i]}" || rc=$?
                ls_die "'ray start' on ${_LS_RAY_STEP_NODES[$i]} exited (status ${rc}) before the cluster was up; see its output above"
            fi
        done
        sleep "$poll"
    done
    rc=0
    wait "$waiter" || rc=$?
    ((rc == 0)) || ls_die "the Ray cluster did not reach ${expected} nodes (status ${rc})"
}

# ls_ray_start: the head on the first node, then a worker on each other node; waits for all.
ls_ray_start() {
    local head_ip=${RAY_HEAD_IP:-}
    if [[ -z $head_ip ]]; then
        head_ip=$(srun --nodes=1 --ntasks=1 --nodelist="$LS_HEAD_NODE" hostname --ip-address) ||
            ls_die "could not get the IP address of ${LS_HEAD_NODE} (set RAY_HEAD_IP)"
        head_ip=${head_ip%%[[:space:]]*} # several addresses: the first
    fi
    [[ -n $head_ip ]] || ls_die "'hostname --ip-address' on ${LS_HEAD_NODE} printed nothing (set RAY_HEAD_IP)"
    _ls_require_count RAY_PORT "${RAY_PORT}" 1
    _ls_require_count RAY_WAIT_TIMEOUT "${RAY_WAIT_TIMEOUT:-300}" 1
    if [[ $head_ip == *:* ]]; then
        LS_RAY_ADDRESS="[${head_ip}]:${RAY_PORT}"
    else
        LS_RAY_ADDRESS="${head_ip}:${RAY_PORT}"
    fi
    export RAY_ADDRESS=$LS_RAY_ADDRESS

    _ls_srun_ray "$LS_HEAD_NODE" --head --node-ip-address="$head_ip" --port="$RAY_PORT"
    ls_ray_wait_for_nodes 1
    local node
    for node in "${LS_NODES[@]:1}"; do
        _ls_srun_ray "$node" --address="$LS_RAY_ADDRESS"
    done
    if ((${#LS_NODES[@]} > 1)); then
        ls_ray_wait_for_nodes "${#LS_NODES[@]}"
    fi
    ls_log "Ray cluster up at ${LS_RAY_ADDRESS} with ${#LS_NODES[@]} nodes"
}

# ls_ray_stop: SIGTERM to every `ray start --block` step (srun passes it on; ray then stops that
# node's processes after draining it for up to 30 s), SIGKILL to those still running after
# RAY_STOP_TIMEOUT seconds. The EXIT trap.
ls_ray_stop() {
    ((${#_LS_RAY_STEP_PIDS[@]} > 0)) || return 0
    ls_log "stopping Ray on ${_LS_RAY_STEP_NODES[*]}"
    local pid deadline=$((SECONDS + ${RAY_STOP_TIMEOUT:-45})) alive
    for pid in "${_LS_RAY_STEP_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    while :; do
        alive=0
        for pid in "${_LS_RAY_STEP_PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        ((alive == 1 && SECONDS < deadline)) || break
        sleep 0.2
    done
    for pid in "${_LS_RAY_STEP_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    _LS_RAY_STEP_PIDS=()
    _LS_RAY_STEP_NODES=()
    ls_log "Ray stopped"
}

_ls_forward() {
    _LS_SIGNALLED=1
    # shellcheck disable=SC2034  # read by the sbatch scripts
    LS_FORWARDED_SIGNAL=$1
    ls_log "received SIG$1: forwarding it to process ${_LS_CHILD_PID}"
    kill -s "$1" "$_LS_CHILD_PID" 2>/dev/null || true
}

# ls_run_forwarding_signals COMMAND [ARG...]: run COMMAND, pass SIGTERM/SIGINT that reach this
# shell on to it, wait for it to finish and return its status. LS_FORWARDED_SIGNAL names the
# last signal passed on (empty: none).
ls_run_forwarding_signals() {
    local saved_traps
    saved_traps=$(trap -p TERM INT)
    "$@" &
    _LS_CHILD_PID=$!
    trap '_ls_forward TERM' TERM
    trap '_ls_forward INT' INT
    local rc rc2
    while :; do
        _LS_SIGNALLED=0
        rc=0
        wait "$_LS_CHILD_PID" || rc=$?
        # `wait` also returns when a trapped signal arrives; go on waiting for the command.
        ((_LS_SIGNALLED == 1)) || break
        if ! kill -0 "$_LS_CHILD_PID" 2>/dev/null; then
            rc2=0
            wait "$_LS_CHILD_PID" || rc2=$?
            ((rc2 == 127)) || rc=$rc2
            break
        fi
    done
    trap - TERM INT
    eval "$saved_traps"
    return "$rc"
}
