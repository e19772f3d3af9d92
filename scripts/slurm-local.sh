#!/usr/bin/env bash
# A private single-node SLURM on this machine, to run the pipeline through `snakemake --executor slurm`
# with the cluster profile (profiles/slurm) exactly as a cluster user would, and check what comes out.
#
#   scripts/slurm-local.sh start                  # install (Debian packages) if needed, configure, start daemons
#   scripts/slurm-local.sh run-suite [SUITE] [DIR] [CONFIG...]  # snakemake --executor slurm on SUITE
#                                                 # (default suites/default.yaml), e.g. CONFIG gpu=1
#   scripts/slurm-local.sh stop                   # stop the daemons this script started (and only those)
#   scripts/slurm-local.sh test [SUITE]           # start, run a small suite (4 SLURM jobs, GPU requests on),
#                                                 # check records and jobs, stop what it started
#   scripts/slurm-local.sh status                 # what is running; `eval "$(scripts/slurm-local.sh env)"` for sinfo etc.
#
# Needs root (apt-get install slurmctld slurmd munge; the daemons run as root). Run it inside the project's
# environment (`./with-env scripts/slurm-local.sh test`): snakemake and wgfbench must be on PATH.
#
# The cluster is private to this checkout: its own slurm.conf (SLURM_CONF), munge key and socket, free TCP
# ports, state and logs under $WGFBENCH_SLURM_DIR (default /tmp/wgfbench-slurm-<hash of this checkout>),
# so it never touches /etc/slurm, a system munged or another engineer's instance. Configuration: one node
# with this machine's CPUs and memory (from `slurmd -C`), proctrack/linuxproc, task/none, no accounting
# (no slurmdbd: the executor plugin polls job states with `squeue`, and MinJobAge keeps finished jobs
# visible for it), select/cons_tres with cores and memory as consumable resources. The node declares one
# GPU generic resource whose device file is /dev/null, only so that the profile's GPU requests (`--gpus=1`
# for neural methods with `--config gpu=1`) are scheduled and can be checked; torch still runs on the CPU.
# The test's work folder is removed after a pass (kept on failure, or with WGFBENCH_SLURM_KEEP=1).
#
# Exit status: 0 done and checked; 1 a check failed (the pipeline or its records are wrong);
# 77 SLURM cannot be set up here (not root, no apt-get, a package or a daemon fails): the reason and the
# daemons' log tails are printed, and the pytest wrapper (tests/test_slurm.py) turns this into a skip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SKIP=77
HASH="$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
D="${WGFBENCH_SLURM_DIR:-/tmp/wgfbench-slurm-$HASH}"
CONF="$D/etc/slurm.conf"
MUNGE_SOCKET="$D/munge/munge.socket"
export SLURM_CONF="$CONF"

log() { printf 'slurm-local: %s\n' "$*" >&2; }

tail_logs() {
    local f
    for f in "$D/munge/munged.log" "$D/log/slurmctld.log" "$D/log/slurmd.log"; do
        if [ -s "$f" ]; then
            printf -- '--- last lines of %s\n' "$f" >&2
            tail -n 15 "$f" >&2
        fi
    done
}

STARTING=0
skip() {
    log "SKIP: $*"
    tail_logs
    # a half-started cluster is stopped again (only the daemons whose pid files are ours)
    [ "$STARTING" -eq 0 ] || stop_daemons quiet
    exit "$SKIP"
}

fail() {
    log "FAIL: $*"
    exit 1
}

# --- installation -----------------------------------------------------------------------------------
have_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && command -v squeue >/dev/null
}

install_packages() {
    have_slurm && return 0
    [ "$(id -u)" -eq 0 ] || skip "SLURM is not installed and installing it needs root (running as uid $(id -u))"
    command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get to install it"
    local apt_log="$D/apt.log" t0=$SECONDS
    mkdir -p "$D"
    log "installing Debian packages slurmctld slurmd munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends slurmctld slurmd munge >"$apt_log" 2>&1; then
        log "apt-get install failed; running apt-get update first"
        apt-get update >>"$apt_log" 2>&1 || true
        if ! apt-get install -y --no-install-recommends slurmctld slurmd munge >>"$apt_log" 2>&1; then
            tail -n 20 "$apt_log" >&2
            skip "apt-get install slurmctld slurmd munge failed (log: $apt_log)"
        fi
    fi
    have_slurm || skip "packages installed but slurmctld/slurmd/munged/sbatch/squeue are still missing"
    log "installed in $((SECONDS - t0)) s: $(slurmd -V)"
}

# --- configuration ----------------------------------------------------------------------------------
free_ports() {
    python3 - <<'EOF'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_config() {
    mkdir -p "$D/etc" "$D/munge" "$D/state" "$D/spool" "$D/log"
    chmod 700 "$D" "$D/munge"
    local node hw cpus boards sockets cores threads mem ports
    node="$(hostname -s)"
    hw="$(slurmd -C | head -n 1)"
    cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")"
    boards="$(sed -n 's/.*Boards=\([0-9]*\).*/\1/p' <<<"$hw")"
    sockets="$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")"
    cores="$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")"
    threads="$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")"
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")"
    [ -n "$cpus" ] && [ -n "$mem" ] || skip "cannot read this machine's CPUs and memory from 'slurmd -C': $hw"
    read -r ctld_port slurmd_port <<<"$(free_ports)"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a private single-node cluster for wgfbench's integration test.
ClusterName=wgfbench
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# finished jobs stay visible to squeue for 10 minutes: the executor plugin polls states with squeue
MinJobAge=600
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # one GPU whose "device" is /dev/null (slurmd drops a GPU without a file): lets --gpus=1 requests be
    # scheduled on this CPU machine; task/none means no device cgroup, so nothing is constrained by it
    printf 'NodeName=%s Name=gpu File=/dev/null\n' "$node" >"$D/etc/gres.conf"
    if [ ! -s "$D/munge/munge.key" ]; then
        dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$D/munge/munge.key"
}

# --- daemons ----------------------------------------------------------------------------------------
# pid_alive FILE NAME: the pid in FILE is a live (not zombie) process whose command name is NAME
pid_alive() {
    local pid stat
    pid="$(cat "$1" 2>/dev/null || true)"
    [ -n "$pid" ] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null || true)"
    # /proc/PID/stat: "PID (COMM) STATE ..."
    [[ "$stat" == "$pid ($2) "* ]] && [[ "$stat" != "$pid ($2) Z"* ]]
}

running() {
    pid_alive "$D/munge/munged.pid" munged && pid_alive "$D/slurmctld.pid" slurmctld \
        && pid_alive "$D/slurmd.pid" slurmd
}

wait_for_idle_node() {
    local i state=""
    for i in $(seq 1 60); do
        state="$(sinfo -h -N -o '%T' 2>/dev/null | head -n 1 || true)"
        case "$state" in
            idle | mixed | allocated) return 0 ;;
        esac
        sleep 1
    done
    skip "the node did not become idle within 60 s (sinfo state: '${state:-no answer}')"
}

start() {
    if running && sinfo -h >/dev/null 2>&1; then
        log "already running (SLURM_CONF=$CONF)"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || skip "starting munged, slurmctld and slurmd needs root (running as uid $(id -u))"
    install_packages
    stop_daemons quiet
    write_config
    STARTING=1
    log "starting munged, slurmctld and slurmd (config $CONF, logs $D/log)"
    munged --force --socket="$MUNGE_SOCKET" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
        --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed" \
        || skip "munged does not start"
    munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 \
        || skip "munged started but a munge/unmunge round trip fails"
    slurmctld -c -f "$CONF" || skip "slurmctld does not start"
    local i
    for i in $(seq 1 30); do
        scontrol ping 2>/dev/null | grep -q UP && break
        sleep 1
    done
    scontrol ping 2>/dev/null | grep -q UP || skip "slurmctld does not answer 'scontrol ping' within 30 s"
    slurmd -f "$CONF" -N "$(hostname -s)" || skip "slurmd does not start"
    wait_for_idle_node
    STARTING=0
    log "cluster up: $(sinfo -h -N -o '%N %T cpus=%c mem=%mMB gres=%G')"
}

# stop_daemons [quiet]: cancel our jobs, then TERM (and after 10 s KILL) the daemons whose pid files are ours
stop_daemons() {
    local name file pid i
    if pid_alive "$D/slurmctld.pid" slurmctld; then
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    fi
    for name in slurmd slurmctld munged; do
        file="$D/$name.pid"
        [ "$name" = munged ] && file="$D/munge/munged.pid"
        pid="$(cat "$file" 2>/dev/null || true)"
        if pid_alive "$file" "$name"; then
            [ "${1:-}" = quiet ] || log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 20); do
                pid_alive "$file" "$name" || break
                sleep 0.5
            done
            if pid_alive "$file" "$name"; then
                log "$name (pid $pid) ignored TERM; sending KILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$file"
    done
}

status() {
    if running; then
        log "running: munged $(cat "$D/munge/munged.pid"), slurmctld $(cat "$D/slurmctld.pid"), slurmd $(cat "$D/slurmd.pid")"
        sinfo
        squeue --states=all
    else
        log "not running (state folder $D)"
        return 3
    fi
}

# --- running a suite --------------------------------------------------------------------------------
# run_suite SUITE DIR [snakemake args...]: the pipeline through SLURM with the cluster profile, in DIR
run_suite() {
    local suite="$1" work="$2"
    shift 2
    command -v snakemake >/dev/null || fail "snakemake is not on PATH (run through ./with-env)"
    command -v wgfbench >/dev/null || fail "wgfbench is not on PATH (run through ./with-env)"
    mkdir -p "$work" "$D/bin"
    # Inside a job, the plugin's jobstep executor removes every SLURM_* variable, SLURM_CONF included,
    # before its `srun` (snakemake-executor-plugin-slurm-jobstep 0.6.1; clusters with slurm.conf in its
    # default place are not affected). Our slurm.conf is private, so that srun finds it through this wrapper,
    # first on the PATH the jobs inherit (sbatch --export=ALL).
    printf '#!/bin/sh\nexport SLURM_CONF=%q\nexec %q "$@"\n' "$CONF" "$(command -v srun)" >"$D/bin/srun"
    chmod +x "$D/bin/srun"
    export PATH="$D/bin:$PATH"
    suite="$(cd "$(dirname "$suite")" && pwd)/$(basename "$suite")"
    log "snakemake --executor slurm --workflow-profile profiles/slurm on $suite (work folder $work)"
    # the cluster profile as a user runs it; the options after it adapt to this private cluster:
    # no accounting (squeue for states, no account), quick first status check, all SLURM logs kept.
    local t0=$SECONDS rc=0
    python -m snakemake -s "$ROOT/Snakefile" -d "$work" --workflow-profile "$ROOT/profiles/slurm" \
        --slurm-status-command squeue --slurm-no-account --slurm-init-seconds-before-status-checks 5 \
        --slurm-logdir "$work/slurm-logs" --slurm-keep-successful-logs --latency-wait 10 \
        --config suite="$suite" out="$work/results" "$@" >"$work/snakemake.log" 2>&1 || rc=$?
    log "snakemake finished with exit status $rc in $((SECONDS - t0)) s (log: $work/snakemake.log)"
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$work/snakemake.log" >&2
        tail_logs
        fail "snakemake --executor slurm failed"
    fi
}

# check_run DIR SUITE GPU: records complete and well formed; every run job went through slurmctld and slurmd
check_run() {
    local work="$1" suite="$2" gpu="$3"
    python - "$work" "$suite" "$gpu" "$D/log/slurmctld.log" "$D/log/slurmd.log" <<'EOF' || fail "checks failed"
import re, subprocess, sys
from pathlib import Path

import pandas as pd
from wgfbench.registry import method_class
from wgfbench.suites import load_suite

work, suite_file, gpu, ctld_log, slurmd_log = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), *sys.argv[4:]
suite = load_suite(suite_file)
problems = []

# 1. records: one per run, one row per evaluated step, status ok, provenance
for r in suite.runs:
    rec = work / "results" / "runs" / r.experiment / r.method / f"d{r.dim}_s{r.seed}.parquet"
    if not rec.exists():
        problems.append(f"missing record {rec}")
        continue
    df = pd.read_parquet(rec)
    if set(df["status"]) != {"ok"}:
        problems.append(f"{rec}: status {sorted(set(df['status']))}")
    if df["k"].max() != r.n_steps or (df[["method", "dim", "seed"]].iloc[0].tolist() != [r.method, r.dim, r.seed]):
        problems.append(f"{rec}: wrong steps or identity")
leftovers = [p for p in (work / "results").rglob("*.tmp")]
if leftovers:
    problems.append(f"temporary files left behind: {leftovers}")
table = work / "results" / "table.md"
if not table.exists() or not (work / "results" / "figures").is_dir():
    problems.append("table.md or figures/ missing")

# 2. every run job was a SLURM job: submitted (snakemake log), run by slurmd, completed per slurmctld
smk = (work / "snakemake.log").read_text()
submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", smk))
ids = sorted(set(submitted.values()), key=int)
ctld, slurmd = Path(ctld_log).read_text(), Path(slurmd_log).read_text()
def job_info(jid):
    """`scontrol show job -o`: one line of KEY=VALUE (finished jobs stay known for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", jid], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))

print("SLURM jobs of this run (scontrol show job; slurmd.log; slurmctld.log):")
print(f"  {'jobid':>5} {'state':9} {'TRES':28} {'per job':12} {'limit':8} {'slurmd':8} {'slurmctld':9} rule/wildcards")
run_jobs = 0
for jid in ids:
    info = job_info(jid)
    launched = re.search(rf"Launching batch job {jid} ", slurmd) is not None
    done = re.search(rf"_job_complete: JobId={jid} done", ctld) is not None
    if not info:
        problems.append(f"SLURM job {jid} not known to scontrol")
        continue
    state, comment, gres = info.get("JobState", "?"), info.get("Comment", "?"), info.get("TresPerJob", "-")
    print(f"  {jid:>5} {state:9} {info.get('TRES', '?'):28} {gres:12} {info.get('TimeLimit', '?'):8} "
          f"{'launched' if launched else 'NO':8} {'done' if done else 'NO':9} {comment}")
    if state != "COMPLETED" or not launched or not done:
        problems.append(f"SLURM job {jid}: state {state}, launched by slurmd {launched}, done in slurmctld {done}")
    m = re.match(r"rule_run_wildcards_(.+)", comment)
    if not m:
        continue
    run_jobs += 1
    method = next((name for name in {r.method for r in suite.runs} if f"_{name}_" in f"_{m.group(1)}_"), None)
    wants_gpu = bool(gpu) and method is not None and method_class(method).accelerated
    has_gpu = "gpu" in gres
    if wants_gpu != has_gpu:
        problems.append(f"SLURM job {jid} ({comment}): GPU requested {has_gpu}, expected {wants_gpu}")
print(f"run jobs through slurmd: {run_jobs} (suite runs: {len(suite.runs)}); local rules: table, figures")
if run_jobs < min(4, len(suite.runs)) or run_jobs != len(suite.runs):
    problems.append(f"{run_jobs} run jobs went through SLURM, expected {len(suite.runs)} (and at least 4)")
if problems:
    print("\n".join("PROBLEM: " + p for p in problems))
    sys.exit(1)
print(f"records: {len(suite.runs)} runs, all status ok; {table} written")
EOF
}

SMOKE_SUITE='name: slurm-smoke
description: >
  SLURM integration test (scripts/slurm-local.sh test): 2 methods x 2 seeds = 4 SLURM jobs, with GPU requests
  on (--config gpu=1): the JKO-ICNN runs (a neural method) ask for a GPU, the exact-JKO runs do not.
eval: {n_samples: 2000, n_w2: 200, n_mc: 256, every: 1}
defaults: {time_budget_s: 120}
experiments:
  ou:
    problem: ou
    dims: [2]
    seeds: [0, 1]
    step_size: 0.1
    n_steps: 3
    methods:
      jko_icnn_exact:
        params: {hidden_width: 8, rank: 2, batch_size: 64, iters_per_step: 3, n_particles: 256, pretrain_iters: 5,
                 pretrain_batch: 64}
      exact_jko: {}
'

cmd="${1:-}"
case "$cmd" in
    start) start ;;
    stop) stop_daemons ;;
    status) status ;;
    env) printf 'export SLURM_CONF=%q\n' "$CONF" ;;
    run-suite)
        suite="${2:-$ROOT/suites/default.yaml}"
        work="${3:-$(mktemp -d /tmp/wgfbench-slurm-run.XXXXXX)}"
        shift $(($# < 3 ? $# : 3))
        gpu=0
        for a in "$@"; do [ "$a" = gpu=1 ] && gpu=1; done
        running || fail "the cluster is not running; run '$0 start' first"
        run_suite "$suite" "$work" "$@"
        check_run "$work" "$suite" "$gpu"
        ;;
    test)
        t_all=$SECONDS
        # one test at a time per checkout (a second one waits), as both would use the same cluster
        mkdir -p "$D"
        exec 9>"$D/test.lock"
        flock -w 1200 9 || fail "another 'slurm-local.sh test' of this checkout holds $D/test.lock"
        work="$(mktemp -d /tmp/wgfbench-slurm-test.XXXXXX)"
        suite="${2:-}"
        if [ -z "$suite" ]; then
            suite="$work/slurm-smoke.yaml"
            printf '%s' "$SMOKE_SUITE" >"$suite"
        fi
        was_running=0
        running && was_running=1
        # stop what this call started, whatever happens next
        [ "$was_running" -eq 1 ] || trap 'stop_daemons' EXIT
        start
        run_suite "$suite" "$work" gpu=1
        check_run "$work" "$suite" 1
        log "PASS in $((SECONDS - t_all)) s"
        # the work folder is kept when something failed (above, via fail), or on request
        if [ "${WGFBENCH_SLURM_KEEP:-0}" = 1 ]; then log "work folder kept: $work"; else rm -rf "$work"; fi
        ;;
    *)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
