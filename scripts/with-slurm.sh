#!/usr/bin/env bash
# Runs a command beside a throwaway single-node Slurm cluster: munged with a fresh key, slurmctld
# and slurmd on free ports of this host, all configured, logging and keeping state in a temp dir,
# SLURM_CONF exported so sbatch/squeue/sinfo find it, and everything stopped and removed
# afterwards, whatever the command's outcome. Needs Debian's slurmctld, slurmd, slurm-client and
# munge (scripts/test.sh installs them) and root (slurmd starts jobs as their user).
#
#   scripts/with-slurm.sh cargo test --release --test sweep_slurm
set -euo pipefail

for tool in munged slurmctld slurmd sbatch sinfo; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found; install Slurm (apt-get install slurmctld slurmd slurm-client munge)" >&2
        exit 1
    }
done
[ "$(id -u)" -eq 0 ] || { echo "error: a Slurm node runs as root: run this as root" >&2; exit 1; }

dir="$(mktemp -d)"
chmod 755 "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
host="$(hostname -s)"
mkdir -p "$dir/state" "$dir/spool"

# munge: a fresh key, its own socket.
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge.key"
munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munge.seed" ||
    { cat "$dir/munged.log" >&2; exit 1; }
pids+=("$(cat "$dir/munged.pid")")

cat >"$dir/slurm.conf" <<EOF
ClusterName=engine-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf"

slurmctld -i || { cat "$dir/slurmctld.log" >&2; exit 1; }
for _ in $(seq 100); do [ -s "$dir/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$dir/slurmctld.pid")")
slurmd || { cat "$dir/slurmd.log" >&2; exit 1; }
for _ in $(seq 100); do [ -s "$dir/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$dir/slurmd.pid")")
# Ready when the node takes jobs.
for _ in $(seq 300); do
    state="$(sinfo -h -n "$host" -o %t 2>/dev/null || true)"
    case "$state" in idle*|mix*|alloc*) break ;; esac
    sleep 0.1
done
case "$state" in
    idle*|mix*|alloc*) ;;
    *) echo "error: the Slurm node did not come up (state '$state')" >&2
       tail -20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2; exit 1 ;;
esac
echo "Slurm $(sinfo -V | awk '{print $2}') on $host, $(nproc) CPUs (throwaway, $dir)"
export ENGINE_SLURM=1
"$@"
