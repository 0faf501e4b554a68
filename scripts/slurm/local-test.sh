#!/usr/bin/env bash
# End-to-end check of scripts/slurm/ on a throwaway one-node Slurm cluster on this machine.
#
#   sudo scripts/slurm/local-test.sh        (Debian/Ubuntu, as root; no systemd needed)
#
# 1. installs Debian's Slurm and MUNGE packages if missing;
# 2. writes a minimal slurm.conf for this host under $WORK (the system's /etc/slurm is untouched;
#    clients find it through SLURM_CONF) and starts munged, slurmctld and slurmd directly;
# 3. submits scenarios/sweep-quick.toml as a 4-task array with sweep.sbatch and waits for it,
#    merges it, then deletes one cell and resubmits only its task (resume: 1 cell rerun);
# 4. merges the shards, runs the same sweep in one process, merges that, and requires the two
#    sweep.csv files to be byte-identical;
# 5. stops the daemons it started.
# Re-runnable: each run starts from a clean $WORK and stops leftovers of a previous run (by the
# pids it recorded). Exit status 0 = pass.
#
# Environment: WORK (default /tmp/roomsim-slurm-test); ROOMSIM (default target/release/roomsim,
# built with `cargo build --release` only if missing or BUILD=1 -- build first if it may be
# stale); TIMEOUT seconds per array job (default 300); KEEP_DAEMONS=1 leaves the cluster running.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${WORK:-/tmp/roomsim-slurm-test}"
TIMEOUT="${TIMEOUT:-300}"
SCENARIO=scenarios/sweep-quick.toml
SWEEP_NAME=sweep-quick
TASKS=4
NODE="$(hostname -s)"
CPUS=2

step() { echo; echo "==> [$(date -u +%T)] $*"; }
info() { echo "    $*"; }
fail() { echo; echo "FAIL: $*" >&2; exit 1; }

if [[ $EUID -ne 0 ]]; then
    fail "run as root (installs packages and starts Slurm daemons)"
fi

# --- pids of the daemons this script started ----------------------------------------------
PIDS="$WORK/pids"
stop_daemons() {
    [[ -d "$PIDS" ]] || return 0
    local name pid
    for name in slurmd slurmctld munged; do
        [[ -f "$PIDS/$name" ]] || continue
        pid="$(cat "$PIDS/$name")"
        if kill -0 "$pid" 2>/dev/null; then
            info "stopping $name (pid $pid)"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$PIDS/$name"
    done
}
dump_logs() {
    local f
    for f in "$WORK"/log/*.log; do
        [[ -f "$f" ]] || continue
        echo "---- tail $f" >&2
        tail -n 25 "$f" >&2
    done
}
on_exit() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then dump_logs; fi
    if [[ "${KEEP_DAEMONS:-0}" != 1 ]]; then
        step "stopping daemons"
        stop_daemons
    fi
    if [[ $rc -eq 0 ]]; then echo; echo "PASS"; else echo; echo "FAILED (exit $rc)" >&2; fi
}

# --- 0. leftovers of a previous run ----------------------------------------------------------
step "preparing $WORK"
stop_daemons
rm -rf "$WORK"
mkdir -p "$PIDS" "$WORK/etc" "$WORK/log" "$WORK/state" "$WORK/spool" "$WORK/jobs"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. packages and binary -------------------------------------------------------------------
step "Slurm and MUNGE packages"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    info "installing slurmctld slurmd slurm-client munge"
    if ! apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >"$WORK/log/apt.log" 2>&1; then
        apt-get update >>"$WORK/log/apt.log" 2>&1
        apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >>"$WORK/log/apt.log" 2>&1 \
            || fail "apt-get install failed, see $WORK/log/apt.log"
    fi
fi
info "$(dpkg-query -W -f='${Package} ${Version}  ' slurmctld slurmd slurm-client munge 2>/dev/null)"

step "roomsim binary"
BUILT="$ROOT/target/release/roomsim"
if [[ -z "${ROOMSIM:-}" ]]; then
    if [[ ! -x "$BUILT" || "${BUILD:-0}" == 1 ]]; then
        info "cargo build --release"
        (cd "$ROOT" && cargo build --release --quiet --bin roomsim) || fail "cargo build --release failed"
    fi
    ROOMSIM="$BUILT"
fi
[[ -x "$ROOMSIM" ]] || fail "no roomsim binary at $ROOMSIM"
# A private copy, so both sweeps use the same binary even if target/ is rebuilt meanwhile.
mkdir -p "$WORK/bin"
cp "$ROOMSIM" "$WORK/bin/roomsim"
info "$ROOMSIM ($("$ROOMSIM" --version), built $(date -u -r "$ROOMSIM" +%FT%TZ)) -> $WORK/bin/roomsim"
ROOMSIM="$WORK/bin/roomsim"

# --- 2. MUNGE ------------------------------------------------------------------------------------
step "munged"
if [[ ! -s /etc/munge/munge.key ]]; then
    info "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --force; else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    info "a munged is already running; using it"
else
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground --force >"$WORK/log/munged.log" 2>&1 &
    echo $! >"$PIDS/munged"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n | unmunge >/dev/null || fail "munged did not come up (see $WORK/log/munged.log)"
    info "munged running (pid $(cat "$PIDS/munged")); munge -n | unmunge works"
fi

# --- 3. Slurm ------------------------------------------------------------------------------------
step "slurm.conf for node $NODE ($CPUS CPUs)"
export SLURM_CONF="$WORK/etc/slurm.conf"
cat >"$SLURM_CONF" <<EOF
# Minimal single-node cluster for scripts/slurm/local-test.sh (generated; do not edit).
ClusterName=roomsim-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool/slurmd-%n
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
sed 's/^/    | /' "$SLURM_CONF"

step "slurmctld and slurmd"
mkdir -p "$WORK/spool/slurmd-$NODE"
slurmctld -D -i -f "$SLURM_CONF" >>"$WORK/log/slurmctld.out" 2>&1 &
echo $! >"$PIDS/slurmctld"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || fail "slurmctld did not answer scontrol ping"
info "slurmctld up (pid $(cat "$PIDS/slurmctld"))"
slurmd -D -f "$SLURM_CONF" -N "$NODE" >>"$WORK/log/slurmd.out" 2>&1 &
echo $! >"$PIDS/slurmd"
state=""
for _ in $(seq 150); do
    kill -0 "$(cat "$PIDS/slurmd")" 2>/dev/null || fail "slurmd exited"
    state="$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)"
    [[ "$state" == idle ]] && break
    sleep 0.2
done
[[ "$state" == idle ]] || fail "node $NODE is '$state', not idle"
info "slurmd up (pid $(cat "$PIDS/slurmd")); sinfo:"
sinfo | sed 's/^/    | /'

# --- 4. the array job ------------------------------------------------------------------------------
OUT_SLURM="$WORK/out-slurm"
cd "$ROOT"

# submit ARRAY_SPEC [extra --export assignments]: prints the job id
submit() {
    local spec="$1" extra="${2:-}" id
    id="$(sbatch --parsable --array="$spec" --output="$WORK/jobs/%A_%a.out" \
        --export=ALL,SCENARIO="$SCENARIO",OUT="$OUT_SLURM",ROOMSIM="$ROOMSIM"${extra:+,$extra} \
        scripts/slurm/sweep.sbatch)"
    echo "${id%%;*}"
}
# wait_job JOB: polls squeue until the job has left the queue (or TIMEOUT)
wait_job() {
    local job="$1" start=$SECONDS left
    while :; do
        left="$(squeue -h -j "$job" -o '%i %T' 2>/dev/null || true)"
        [[ -z "$left" ]] && break
        if (( SECONDS - start > TIMEOUT )); then
            squeue -j "$job" >&2 || true
            scancel "$job" || true
            fail "array job $job still queued/running after ${TIMEOUT}s"
        fi
        info "t+$((SECONDS - start))s: $(echo "$left" | tr '\n' ' ')"
        sleep 1
    done
    info "job $job left the queue after $((SECONDS - start))s"
}
# check_tasks JOB TASK...: every task COMPLETED with exit 0:0; shows its output
check_tasks() {
    local job="$1" t line jstate jexit bad=0
    shift
    for t in "$@"; do
        line="$(scontrol -o show job "${job}_$t" 2>/dev/null || true)"
        jstate="$(grep -o 'JobState=[A-Z_]*' <<<"$line" | head -n1 | cut -d= -f2)"
        jexit="$(grep -o ' ExitCode=[0-9:]*' <<<"$line" | head -n1 | cut -d= -f2)"
        info "task ${job}_$t: ${jstate:-?} exit ${jexit:-?}"
        [[ "$jstate" == COMPLETED && "$jexit" == 0:0 ]] || bad=1
        if [[ -f "$WORK/jobs/${job}_$t.out" ]]; then sed 's/^/      | /' "$WORK/jobs/${job}_$t.out"; else info "  (no output file)"; bad=1; fi
    done
    [[ $bad -eq 0 ]] || fail "some tasks of job $job did not complete successfully"
}

step "sbatch --array=0-$((TASKS - 1)) scripts/slurm/sweep.sbatch ($SCENARIO)"
job="$(submit "0-$((TASKS - 1))")"
info "submitted array job $job"
wait_job "$job"
check_tasks "$job" $(seq 0 $((TASKS - 1)))

step "merging the shards (scripts/slurm/merge.sh)"
OUT="$OUT_SLURM" MERGED="$WORK/merged-slurm" ROOMSIM="$ROOMSIM" SWEEP_NAME="$SWEEP_NAME" EXPECTED_CELLS=18 \
    scripts/slurm/merge.sh 2>&1 | sed 's/^/    | /'
cp "$WORK/merged-slurm/sweep.csv" "$WORK/sweep-first.csv"

step "resume: delete cell 5 (shard 2/$TASKS), resubmit only array task 1 with NSHARDS=$TASKS"
cell="$(find "$OUT_SLURM/$SWEEP_NAME-sweep/cells" -mindepth 1 -maxdepth 1 -name '00005-*' | head -n1)"
[[ -n "$cell" ]] || fail "no cell 00005-* in $OUT_SLURM"
rm -rf "$cell"
info "deleted $(basename "$cell")"
job2="$(submit 1 NSHARDS=$TASKS)"
info "submitted array job $job2"
wait_job "$job2"
check_tasks "$job2" 1
grep -q ', 1 to run' "$WORK/jobs/${job2}_1.out" || fail "the resubmitted shard did not run exactly one cell"
[[ -f "$cell/summary.json" ]] || fail "cell 5 was not rewritten"
OUT="$OUT_SLURM" MERGED="$WORK/merged-slurm" ROOMSIM="$ROOMSIM" SWEEP_NAME="$SWEEP_NAME" EXPECTED_CELLS=18 \
    scripts/slurm/merge.sh 2>&1 | sed 's/^/    | /'
cmp "$WORK/sweep-first.csv" "$WORK/merged-slurm/sweep.csv" || fail "sweep.csv changed after resuming"
info "cell 5 redone; merged sweep.csv unchanged"

# --- 5. the same sweep in one process ----------------------------------------------------------
step "the same sweep in one process"
"$ROOMSIM" sweep "$SCENARIO" --out "$WORK/out-single" --threads "$CPUS" 2>&1 | sed 's/^/    | /'
"$ROOMSIM" merge "$WORK/out-single/$SWEEP_NAME-sweep" --out "$WORK/merged-single" 2>&1 | sed 's/^/    | /'

step "comparing sweep.csv"
a="$WORK/merged-slurm/sweep.csv"
b="$WORK/merged-single/sweep.csv"
[[ -s "$a" && -s "$b" ]] || fail "missing $a or $b"
info "slurm:  $(sha256sum "$a" | cut -c1-16)  $(($(wc -l <"$a") - 1)) cells  $a"
info "single: $(sha256sum "$b" | cut -c1-16)  $(($(wc -l <"$b") - 1)) cells  $b"
if ! cmp "$a" "$b"; then
    diff "$a" "$b" | head -n 20 >&2 || true
    fail "sweep.csv differs between the Slurm array and the single-process sweep"
fi
info "byte-identical"
