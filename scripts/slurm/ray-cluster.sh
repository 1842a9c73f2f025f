# shellcheck shell=bash
# Start and stop a Ray cluster across the nodes of a SLURM allocation, and run a command with
# SIGTERM/SIGINT forwarded to it. Sourced by train.sbatch, evaluate.sbatch and predict.sbatch;
# defines functions and nothing else.
#
# Inputs (variables the sbatch scripts set before calling the functions):
#   RAY_PORT, RAY_HEAD_IP, RAY_START_ARGS, RAY_WAIT_TIMEOUT, RAY_WAIT_POLL, RAY_STOP_TIMEOUT,
#   RAY_DRAIN_TIMEOUT, RAY_REACH_TIMEOUT, CPUS_PER_NODE, GPUS_PER_NODE, WORKERS_PER_NODE (empty: taken from the
#   allocation); RAY_AUTH_MODE, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH (Ray's own, may be unset).
# Outputs (set by the functions):
#   LS_NODES (array), LS_HEAD_NODE, LS_CPUS_PER_NODE, LS_GPUS_PER_NODE, LS_WORKERS_PER_NODE,
#   LS_NUM_WORKERS, LS_CPUS_PER_WORKER, LS_RAY_ADDRESS (also exported as RAY_ADDRESS),
#   RAY_AUTH_MODE (exported), LS_CLUSTER_OVERRIDES (array of Hydra overrides),
#   LS_FORWARDED_SIGNAL.

_LS_RAY_STEP_PIDS=()
_LS_RAY_STEP_NODES=()
_LS_RAY_PIDFILES=()
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
    # The job's --gpus-per-node (SLURM_GPUS_PER_NODE) before the GPUs SLURM allocated on the node
    # (SLURM_GPUS_ON_NODE): an --exclusive job (train.sbatch) is allocated every GPU of its nodes,
    # whatever --gpus-per-node asks, so --gpus-per-node=0 on a GPU node would still use them all.
    local gpus gpu_source
    if [[ -n ${GPUS_PER_NODE:-} ]]; then
        gpus=$GPUS_PER_NODE gpu_source="GPUS_PER_NODE=${GPUS_PER_NODE}"
    elif [[ -n ${SLURM_GPUS_PER_NODE:-} ]]; then
        gpus=$SLURM_GPUS_PER_NODE gpu_source="--gpus-per-node=${SLURM_GPUS_PER_NODE}"
    elif [[ -n ${SLURM_GPUS_ON_NODE:-} ]]; then
        gpus=$SLURM_GPUS_ON_NODE gpu_source="SLURM_GPUS_ON_NODE=${SLURM_GPUS_ON_NODE}"
    else
        gpus=0 gpu_source="no GPUs allocated"
    fi
    if [[ -n ${SLURM_GPUS_ON_NODE:-} && $gpu_source != SLURM_GPUS_ON_NODE=* ]]; then
        gpu_source+=" of SLURM_GPUS_ON_NODE=${SLURM_GPUS_ON_NODE} allocated"
    fi
    LS_GPUS_PER_NODE=${gpus##*:} # "a100:4" -> 4
    _ls_require_count "GPUS_PER_NODE (or SLURM_GPUS_PER_NODE, SLURM_GPUS_ON_NODE)" "$LS_GPUS_PER_NODE" 0

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
        "${LS_GPUS_PER_NODE} GPUs (${gpu_source}), ${LS_WORKERS_PER_NODE} workers; ${LS_NUM_WORKERS} workers in all"
}

# ls_cluster_overrides: the Hydra overrides that point ls-train / ls-evaluate at this cluster.
# cluster.resources_per_worker is cleared (null) before it is set: Hydra merges a dict override
# into the config's dict, so {CPU:8} on cluster=gpu ({CPU:4, GPU:1}) kept GPU:1 beside
# use_gpu=false (Ray Train refuses that), and {CPU:4,GPU:1} on cluster=cpu ({CPU:1}) was refused
# ("Could not override 'cluster.resources_per_worker'": no GPU key there).
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
        "cluster.resources_per_worker=null"
        "cluster.resources_per_worker=${resources}"
    )
}

# ls_ray_auth: one token-authentication mode for `ray start` on every node and for every Ray
# client of the job (the node check, ls-train, ls-evaluate, ls-predict), exported as
# RAY_AUTH_MODE, which srun passes on to every job step. Ray decides differently per entry point
# when RAY_AUTH_MODE is unset: `ray start --head` turns token authentication on when it finds a
# token, while `ray start --address=...` and `ray.init(address=HOST:PORT)` never do, so a client
# would be refused (InvalidAuthToken) by a head that found ~/.ray/auth_token. Unset here:
# "token" when a token is found (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH, or
# ~/.ray/auth_token), else "disabled". The token is read by every node itself: a file must be
# readable at the same path on all of them (a home folder shared across the nodes does that).
ls_ray_auth() {
    local source=""
    if [[ -n ${RAY_AUTH_TOKEN:-} ]]; then
        source="RAY_AUTH_TOKEN"
    elif [[ -n ${RAY_AUTH_TOKEN_PATH:-} ]]; then
        [[ -r $RAY_AUTH_TOKEN_PATH && -s $RAY_AUTH_TOKEN_PATH ]] ||
            ls_die "RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH} is not a readable, non-empty file" 2
        source=$RAY_AUTH_TOKEN_PATH
    elif [[ -n ${HOME:-} && -r $HOME/.ray/auth_token && -s $HOME/.ray/auth_token ]]; then
        source="$HOME/.ray/auth_token"
    fi
    case ${RAY_AUTH_MODE:-} in
        "")
            if [[ -n $source ]]; then RAY_AUTH_MODE=token; else RAY_AUTH_MODE=disabled; fi
            ;;
        token)
            [[ -n $source ]] || ls_die "RAY_AUTH_MODE=token but no token was found: create one with \
'ray get-auth-token --generate' (writes ~/.ray/auth_token), or set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH" 2
            ;;
    esac
    export RAY_AUTH_MODE
    case $RAY_AUTH_MODE in
        token) ls_log "Ray token authentication on (token from ${source}; every node reads it there)" ;;
        disabled) ls_log "Ray token authentication off: no RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or" \
            "${HOME:-~}/.ray/auth_token (anyone who can reach the nodes' Ray ports can use this cluster)" ;;
        *) ls_log "Ray authentication mode RAY_AUTH_MODE=${RAY_AUTH_MODE} (as set)" ;;
    esac
}

# _ls_pick_address RESOLVED ALL: the first address that is neither loopback nor link-local of
# RESOLVED (what the node's name resolves to), else of ALL (every interface), IPv4 before IPv6
# within each; prints nothing when there is none.
_ls_pick_address() {
    local list addr ipv6
    for list in "$1" "$2"; do
        for ipv6 in 0 1; do
            for addr in $list; do
                case $addr in 127.* | ::1 | [fF][eE]80:*) continue ;; esac
                if { [[ $addr == *:* ]] && ((ipv6 == 0)); } || { [[ $addr != *:* ]] && ((ipv6 == 1)); }; then
                    continue
                fi
                echo "$addr"
                return 0
            done
        done
    done
}

# ls_head_address: the head's address for the other nodes (RAY_HEAD_IP when set). Debian and
# others map the host name to 127.0.x.1, so `hostname --ip-address` alone can be loopback.
ls_head_address() {
    LS_HEAD_IP=${RAY_HEAD_IP:-}
    [[ -z $LS_HEAD_IP ]] || return 0
    local lines resolved all
    # shellcheck disable=SC2016  # expanded by the bash on the head node
    lines=$(srun --nodes=1 --ntasks=1 --nodelist="$LS_HEAD_NODE" \
        bash -c 'echo $(hostname --ip-address 2>/dev/null); echo $(hostname --all-ip-addresses 2>/dev/null)') ||
        ls_die "could not list the addresses of ${LS_HEAD_NODE} (set RAY_HEAD_IP)"
    resolved=$(sed -n 1p <<<"$lines")
    all=$(sed -n 2p <<<"$lines")
    LS_HEAD_ADDRESSES="hostname --ip-address: '${resolved}', --all-ip-addresses: '${all}'"
    LS_HEAD_IP=$(_ls_pick_address "$resolved" "$all")
    if [[ -z $LS_HEAD_IP ]]; then
        if ((${#LS_NODES[@]} > 1)); then
            ls_die "${LS_HEAD_NODE} has no address but loopback for the other nodes to reach \
(${LS_HEAD_ADDRESSES}): set RAY_HEAD_IP" 2
        fi
        LS_HEAD_IP=${resolved%%[[:space:]]*}
        [[ -n $LS_HEAD_IP ]] || ls_die "'hostname --ip-address' on ${LS_HEAD_NODE} printed nothing (set RAY_HEAD_IP)"
    fi
    ls_log "head address ${LS_HEAD_IP} (${LS_HEAD_NODE}: ${LS_HEAD_ADDRESSES}; RAY_HEAD_IP picks another)"
}

# _ls_srun_ray NODE RAY_START_OPTION...: `ray start ... --block` as a background job step on NODE;
# the step's shell writes the pid of `ray start` to a file on NODE, for ls_ray_stop.
_ls_srun_ray() {
    local node=$1
    shift
    local step=(srun --nodes=1 --ntasks=1 --cpus-per-task="$LS_CPUS_PER_NODE" --nodelist="$node")
    if ((LS_GPUS_PER_NODE > 0)); then
        step+=(--gpus-per-node="$LS_GPUS_PER_NODE")
    fi
    local extra=()
    read -r -a extra <<<"${RAY_START_ARGS:-}"
    local pidfile="${TMPDIR:-/tmp}/ls-ray-${SLURM_JOB_ID:-0}-${node}.pid"
    ls_log "starting Ray on ${node}: ray start $* --num-cpus=${LS_CPUS_PER_NODE} --num-gpus=${LS_GPUS_PER_NODE}"
    # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S: how long `ray start` waits, after SIGTERM, for its node
    # to drain before it stops the node's processes; a detached actor (Ray Train leaves one) keeps
    # a node from ever draining, so this is how long every stop takes (Ray's default: 30 s)
    # shellcheck disable=SC2016  # expanded by the bash on NODE
    "${step[@]}" bash -c 'echo "$$" >"$0" && exec "$@"' "$pidfile" \
        env RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_DRAIN_TIMEOUT:-10}" \
        ray start "$@" --num-cpus="$LS_CPUS_PER_NODE" --num-gpus="$LS_GPUS_PER_NODE" "${extra[@]}" --block &
    _LS_RAY_STEP_PIDS+=("$!")
    _LS_RAY_STEP_NODES+=("$node")
    _LS_RAY_PIDFILES+=("$pidfile")
}

# _ls_check_reach NODE: NODE opens a TCP connection to the head's GCS port within
# RAY_REACH_TIMEOUT s, or the job ends, naming the node and the address.
_ls_check_reach() {
    local node=$1 timeout=${RAY_REACH_TIMEOUT:-10}
    # shellcheck disable=SC2016  # expanded by the bash on NODE
    if ! srun --nodes=1 --ntasks=1 --nodelist="$node" timeout "$timeout" \
        bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$LS_HEAD_IP" "$RAY_PORT"; then
        ls_die "${node} cannot reach the Ray head at ${LS_RAY_ADDRESS} (${LS_HEAD_NODE}) within ${timeout} s: \
set RAY_HEAD_IP to an address of ${LS_HEAD_NODE} on a network every node shares \
(${LS_HEAD_ADDRESSES:-RAY_HEAD_IP=${RAY_HEAD_IP:-}}), or check that no firewall blocks port ${RAY_PORT}"
    fi
}

# The node count check, run with the environment's python: argv = address, expected nodes,
# timeout (s), poll interval (s). Exits 0 once `expected` nodes are alive, 1 on timeout.
_LS_RAY_WAIT_PY='
import os
import sys
import time

import ray

address, expected, timeout, poll = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
auth = "RAY_AUTH_MODE=" + os.environ.get("RAY_AUTH_MODE", "")
deadline = time.monotonic() + timeout
while True:
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        break
    except Exception as err:  # the head is not up yet (ConnectionError, RpcError, ...)
        if time.monotonic() > deadline:
            sys.exit(f"[ls-slurm] error: no Ray cluster answered at {address} within {timeout:g} s "
                     f"({auth}): {err}")
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

# ls_ray_start: the head on the first node, then a worker on each other node (once that node can
# reach the head); waits for all.
ls_ray_start() {
    _ls_require_count RAY_PORT "${RAY_PORT}" 1
    _ls_require_count RAY_WAIT_TIMEOUT "${RAY_WAIT_TIMEOUT:-300}" 1
    _ls_require_count RAY_REACH_TIMEOUT "${RAY_REACH_TIMEOUT:-10}" 1
    _ls_require_count RAY_DRAIN_TIMEOUT "${RAY_DRAIN_TIMEOUT:-10}" 0
    ls_ray_auth
    ls_head_address
    if [[ $LS_HEAD_IP == *:* ]]; then
        LS_RAY_ADDRESS="[${LS_HEAD_IP}]:${RAY_PORT}"
    else
        LS_RAY_ADDRESS="${LS_HEAD_IP}:${RAY_PORT}"
    fi
    export RAY_ADDRESS=$LS_RAY_ADDRESS

    _ls_srun_ray "$LS_HEAD_NODE" --head --node-ip-address="$LS_HEAD_IP" --port="$RAY_PORT"
    ls_ray_wait_for_nodes 1
    local node
    for node in "${LS_NODES[@]:1}"; do
        _ls_check_reach "$node"
        _ls_srun_ray "$node" --address="$LS_RAY_ADDRESS"
    done
    if ((${#LS_NODES[@]} > 1)); then
        ls_ray_wait_for_nodes "${#LS_NODES[@]}"
    fi
    ls_log "Ray cluster up at ${LS_RAY_ADDRESS} with ${#LS_NODES[@]} nodes"
}

# _ls_term_ray INDEX: SIGTERM to the `ray start` process of step INDEX alone, from a job step that
# shares the node (`srun --overlap`), so that Ray drains the node and stops its processes in
# order. Not to srun, which would SIGKILL its task, nor to the whole step (`scancel --signal`),
# which would stop the head's GCS while its raylet still drains. When that step cannot run (the
# job is ending) or the pid file is not there yet, SIGTERM to srun instead.
_ls_term_ray() {
    local i=$1
    # shellcheck disable=SC2016  # expanded by the bash on the node
    if ! srun --overlap --nodes=1 --ntasks=1 --nodelist="${_LS_RAY_STEP_NODES[$i]}" \
        bash -c 'pid=$(<"$0") && rm -f "$0" && kill -TERM "$pid"' "${_LS_RAY_PIDFILES[$i]}" 2>/dev/null; then
        kill -TERM "${_LS_RAY_STEP_PIDS[$i]}" 2>/dev/null || true
    fi
}

# _ls_wait_ray_steps DEADLINE INDEX...: until those `ray start` steps have ended, or SECONDS
# reaches DEADLINE; returns 1 when one still runs.
_ls_wait_ray_steps() {
    local deadline=$1 i alive
    shift
    while :; do
        alive=0
        for i in "$@"; do
            if kill -0 "${_LS_RAY_STEP_PIDS[$i]}" 2>/dev/null; then alive=1; fi
        done
        ((alive == 1)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# ls_ray_stop: SIGTERM to the `ray start` process of every node, the other nodes first and the head
# last (each drains its node for up to RAY_DRAIN_TIMEOUT seconds, then stops its Ray processes);
# after RAY_STOP_TIMEOUT seconds in all, the steps still running are killed. Removes the head's record of the cluster
# (<temp dir>/ray_current_cluster). The EXIT trap; a second call does nothing.
ls_ray_stop() {
    ((${#_LS_RAY_STEP_PIDS[@]} > 0)) || return 0
    trap 'ls_log "received SIGTERM while stopping Ray: still stopping it"' TERM
    trap 'ls_log "received SIGINT while stopping Ray: still stopping it"' INT
    ls_log "stopping Ray on ${_LS_RAY_STEP_NODES[*]}"
    local deadline=$((SECONDS + ${RAY_STOP_TIMEOUT:-45})) i workers=() signallers=() stopped=1
    for ((i = 1; i < ${#_LS_RAY_STEP_PIDS[@]}; i++)); do
        workers+=("$i")
        _ls_term_ray "$i" &
        signallers+=("$!")
    done
    for i in "${signallers[@]}"; do
        wait "$i" || true
    done
    if ((${#workers[@]} > 0)); then
        _ls_wait_ray_steps "$deadline" "${workers[@]}" || stopped=0
    fi
    _ls_term_ray 0
    _ls_wait_ray_steps "$deadline" "${!_LS_RAY_STEP_PIDS[@]}" || stopped=0
    if ((stopped == 0)); then
        ls_log "Ray still running after RAY_STOP_TIMEOUT=${RAY_STOP_TIMEOUT:-45} s: killing it"
        for i in "${!_LS_RAY_STEP_PIDS[@]}"; do
            kill -TERM "${_LS_RAY_STEP_PIDS[$i]}" 2>/dev/null || true # srun SIGKILLs its task
        done
        _ls_wait_ray_steps $((SECONDS + 10)) "${!_LS_RAY_STEP_PIDS[@]}" ||
            kill -KILL "${_LS_RAY_STEP_PIDS[@]}" 2>/dev/null || true
    fi
    for i in "${!_LS_RAY_STEP_PIDS[@]}"; do
        wait "${_LS_RAY_STEP_PIDS[$i]}" 2>/dev/null || true
    done
    _ls_forget_cluster
    _LS_RAY_STEP_PIDS=()
    _LS_RAY_STEP_NODES=()
    _LS_RAY_PIDFILES=()
    trap - TERM INT
    ls_log "Ray stopped"
}

# _ls_forget_cluster: remove <temp dir>/ray_current_cluster on this node (the head: SLURM runs
# the batch script on the first node) when it names this job's cluster; a `ray start` stopped by a
# signal leaves it behind, and a later `ray.init(address="auto")` there would try to join it.
_ls_forget_cluster() {
    local extra=() temp_dir="" i record
    read -r -a extra <<<"${RAY_START_ARGS:-}"
    for i in "${!extra[@]}"; do
        case ${extra[$i]} in
            --temp-dir=*) temp_dir=${extra[$i]#--temp-dir=} ;;
            --temp-dir) temp_dir=${extra[$((i + 1))]:-} ;;
        esac
    done
    temp_dir=${temp_dir:-${RAY_TMPDIR:-${TMPDIR:-/tmp}}/ray}
    record="${temp_dir}/ray_current_cluster"
    if [[ -f $record && $(<"$record") == "${LS_RAY_ADDRESS:-}" ]]; then
        rm -f "$record"
    fi
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
