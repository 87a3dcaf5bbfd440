#!/usr/bin/env bash
# A single-node SLURM cluster on localhost, for the SLURM tests and CI (Debian: slurmctld slurmd slurm-client munge;
# run as root). Config, state, logs, the munge socket and the daemons' PIDs live in one temporary directory, which
# SLURM_CONF selects; nothing outside it is touched, so it runs beside a system cluster.
#
#   eval "$(bash scripts/slurm_cluster.sh start)"   # prints `export SLURM_CONF=<dir>/slurm.conf` once the node is idle
#   bash scripts/slurm_cluster.sh stop [<dir>]      # stops the daemons it started, by PID; <dir> defaults to SLURM_CONF's
#
# Partition `debug` (the default) holds the node, with the machine's CPUs and memory (slurmd -C).
set -euo pipefail

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
  for program in munged slurmctld slurmd sinfo setpriv; do
    command -v "$program" >/dev/null || { echo "slurm_cluster.sh: $program not found (apt-get install slurmctld slurmd slurm-client munge)" >&2; exit 1; }
  done
  local dir node_hw
  dir=$(mktemp -d /tmp/psmexp-slurm.XXXXXX)
  chmod 755 "$dir"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
  chown munge:munge "$dir/munge"
  # munged as user munge (it refuses root), with its own socket so that a system munged can keep running.
  setpriv --reuid=munge --regid=munge --init-groups munged -F --socket="$dir/munge/socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" \
    >"$dir/munged.out" 2>&1 &
  echo $! >"$dir/munged.pid"
  node_hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //; s/ UpTime=.*//')
  cat >"$dir/slurm.conf" <<EOF
ClusterName=psmexp
SlurmctldHost=localhost
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after 10 s (the default makes it wait ~120 s).
AuthInfo=socket=$dir/munge/socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 $node_hw State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  for _ in $(seq 50); do [ -S "$dir/munge/socket" ] && break; sleep 0.1; done
  slurmctld -D -f "$dir/slurm.conf" >"$dir/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pid"
  slurmd -D -f "$dir/slurm.conf" -N localhost >"$dir/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pid"
  for _ in $(seq 300); do
    if [ "$(SLURM_CONF=$dir/slurm.conf sinfo -h -n localhost -o %t 2>/dev/null)" = idle ]; then
      echo "export SLURM_CONF=$dir/slurm.conf"
      return 0
    fi
    sleep 0.1
  done
  echo "slurm_cluster.sh: the node did not become idle within 30 s; logs in $dir:" >&2
  tail -n 20 "$dir"/*.log "$dir"/*.out >&2 || true
  stop "$dir"
  exit 1
}

stop() {
  local dir=${1:-$(dirname "${SLURM_CONF:?give the cluster directory or set SLURM_CONF}")}
  [ -f "$dir/slurm.conf" ] || { echo "slurm_cluster.sh: $dir holds no slurm.conf" >&2; exit 1; }
  # Jobs still on the cluster first (their slurmstepd processes outlive slurmd), then the daemons.
  SLURM_CONF=$dir/slurm.conf timeout 10 scancel --full --partition=debug 2>/dev/null || true
  local pids=()
  for name in slurmd slurmctld munged; do
    [ -f "$dir/$name.pid" ] && pids+=("$(cat "$dir/$name.pid")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { kill -9 "$pid" 2>/dev/null || true; }
  done
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | stop [<dir>]" >&2; exit 2 ;;
esac
