#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for `make test-slurm` (Debian's slurm-wlm + munge).
#
#   slurm/local_cluster.sh start DIR   # install if missing, write DIR/slurm.conf, start munged/slurmctld/slurmd
#   slurm/local_cluster.sh stop DIR    # stop the daemons it started (by the PIDs in DIR/*.pid)
#
# Everything (config, state, logs, PID files) lives in DIR; the client commands find the cluster
# through `export SLURM_CONF=DIR/slurm.conf`. Needs root (apt-get, daemons running as root).
set -euo pipefail

cmd="${1:?usage: $0 start|stop DIR}"
dir="$(mkdir -p "${2:?usage: $0 start|stop DIR}" && cd "$2" && pwd)"

stop() {
    for name in slurmd slurmctld munged; do
        pidfile="$dir/$name.pid"
        [[ -f "$pidfile" ]] || continue
        pid="$(cat "$pidfile")"
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$pidfile"
    done
}

if [[ "$cmd" == stop ]]; then
    stop
    exit 0
fi
[[ "$cmd" == start ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [[ "$(id -u)" != 0 ]]; then
        echo "error: slurm-wlm and munge are not installed and this is not root; install them with" \
             "'apt-get install slurm-wlm munge'" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

stop  # a previous run's daemons, if any were left
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"

# munge: its own socket, key and PID in DIR (the package's key when there is one)
key=/etc/munge/munge.key
if [[ ! -s "$key" ]]; then
    key="$dir/munge/munge.key"
    [[ -s "$key" ]] || mungekey --create --keyfile="$key"
fi
chown munge:munge "$dir/munge" "$key" 2>/dev/null || true
chmod 700 "$dir/munge"
socket="$dir/munge/munge.socket"
runuser -u munge -- munged --key-file="$key" --socket="$socket" --pid-file="$dir/munge/munged.pid" \
    --seed-file="$dir/munge/munged.seed" --log-file="$dir/munge/munged.log" --force
for _ in $(seq 50); do [[ -s "$dir/munge/munged.pid" ]] && break; sleep 0.1; done
cp "$dir/munge/munged.pid" "$dir/munged.pid"

cat > "$dir/slurm.conf" <<EOF
# single-node test cluster written by slurm/local_cluster.sh
ClusterName=pixperfect-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=30
JobRequeue=1
MaxJobCount=1000
SchedulerParameters=nohold_on_prolog_fail
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF="$dir/slurm.conf"
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm cluster up: node $host, $cpus CPUs, partition cpu (SLURM_CONF=$SLURM_CONF)"
        exit 0
    fi
    sleep 0.3
done
echo "error: the Slurm node did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
sinfo >&2 || true
exit 1
