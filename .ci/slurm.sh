#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, from Debian's packages, for the SLURM tests.
#
#   .ci/slurm.sh start                  install what is missing, configure, start with accounting, wait for the node
#   .ci/slurm.sh start --no-accounting  the same without slurmdbd (sacct then fails, as on many small clusters)
#   .ci/slurm.sh stop                   stop every daemon this script started (munge and MariaDB only if it started them)
#   .ci/slurm.sh status                 say what runs and in which mode
#
# Installs (apt, non-interactive, root or sudo) slurm-wlm, munge, slurmdbd and mariadb-server when missing. The
# configuration is fitted to this machine: one node named after the host with its CPUs and 80% of its memory,
# no cgroups (proctrack/linuxproc, task/none), one partition `debug` whose CPUs may each hold 4 jobs at once
# (OverSubscribe=FORCE:4: a sweep job on SLURM then still finds a CPU for its own training jobs on a small
# machine) and a partition `closed` that takes jobs but never starts them (State=DOWN), for the pending tests.
# A slurm.conf that this script did not write is never touched: the script refuses and says so.
# Switching mode (start, then start --no-accounting) restarts slurmctld and slurmd only; jobs are lost.
set -euo pipefail

MARK="# written by FARS .ci/slurm.sh"
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
STATE=/var/spool/fars-slurm
RUN=/run/fars-slurm
LOGS=/var/log/fars-slurm
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo -n"

say() { echo "slurm.sh: $*" >&2; }
die() { say "$*"; exit 1; }

install_missing() {
  local want=()
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null || want+=(slurm-wlm)
  command -v munged >/dev/null || want+=(munge)
  if [ "$1" = yes ]; then
    command -v slurmdbd >/dev/null || want+=(slurmdbd)
    command -v mariadbd >/dev/null || want+=(mariadb-server)
  fi
  [ ${#want[@]} -eq 0 ] && return 0
  say "installing ${want[*]} (apt)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

write_conf() {  # $1: yes|no accounting
  if [ -f "$CONF" ] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
  fi
  local host cpus mem_mb acct gather
  host=$(hostname -s)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc honours OMP_NUM_THREADS otherwise
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
  if [ "$1" = yes ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
    gather=jobacct_gather/linux
  else
    acct="AccountingStorageType=accounting_storage/none"
    gather=jobacct_gather/none
  fi
  $SUDO mkdir -p "$STATE/ctld" "$STATE/d" "$RUN" "$LOGS" /etc/slurm
  $SUDO tee "$CONF.new" >/dev/null <<EOF
$MARK (accounting: $1)
ClusterName=fars
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1024
KillWait=5
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
$acct
JobAcctGatherType=$gather
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=closed Nodes=$host MaxTime=INFINITE State=DOWN
EOF
  if [ "$1" = yes ]; then
    $SUDO tee "$DBD_CONF" >/dev/null <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=fars-ci
StorageLoc=slurm_acct_db
EOF
    $SUDO chmod 600 "$DBD_CONF"
  fi
}

running() { [ -f "$RUN/$1.pid" ] && $SUDO kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

stop_daemon() {  # $1: slurmd|slurmctld|slurmdbd
  running "$1" || { $SUDO rm -f "$RUN/$1.pid"; return 0; }
  local pid
  pid=$(cat "$RUN/$1.pid")
  $SUDO kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  $SUDO kill -9 "$pid" 2>/dev/null || true
  $SUDO rm -f "$RUN/$1.pid"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  $SUDO /etc/init.d/munge start >/dev/null
  echo munge | $SUDO tee -a "$RUN/started" >/dev/null
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "munged did not start (see /var/log/munge/munged.log)"
}

start_accounting() {
  if ! $SUDO mariadb -e 'select 1' >/dev/null 2>&1; then
    $SUDO /etc/init.d/mariadb start >/dev/null
    echo mariadb | $SUDO tee -a "$RUN/started" >/dev/null
  fi
  $SUDO mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'fars-ci';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  running slurmdbd || $SUDO slurmdbd
  for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
  sacctmgr -n list cluster >/dev/null 2>&1 || die "slurmdbd does not answer (see $LOGS/slurmdbd.log)"
  sacctmgr -n -P list cluster format=cluster | grep -qx fars || $SUDO sacctmgr -i add cluster fars >/dev/null
}

wait_for_node() {
  local host state
  host=$(hostname -s)
  for _ in $(seq 120); do
    state=$(sinfo -h -n "$host" -p debug -o %T 2>/dev/null || true)
    case "$state" in
      idle|mixed|allocated) return 0 ;;
      down*|drain*) $SUDO scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  die "node $host did not become idle (state: ${state:-none}); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
}

cmd_start() {
  local accounting=yes
  [ "${1:-}" = "--no-accounting" ] && accounting=no
  install_missing "$accounting"
  write_conf "$accounting"  # as $CONF.new: the running cluster is kept when nothing changed
  if cmp -s "$CONF" "$CONF.new" && running slurmctld && running slurmd; then
    $SUDO rm -f "$CONF.new"
    wait_for_node
    say "already running (accounting: $accounting)"
    return 0
  fi
  stop_daemon slurmd
  stop_daemon slurmctld
  $SUDO mv "$CONF.new" "$CONF"
  $SUDO touch "$RUN/started"
  start_munge
  [ "$accounting" = yes ] && start_accounting
  $SUDO slurmctld
  $SUDO slurmd
  wait_for_node
  say "running: node $(hostname -s), $(sinfo -h -N -p debug -o %c) CPUs, partitions debug and closed (accounting: $accounting)"
}

cmd_stop() {
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon slurmdbd
  if [ -f "$RUN/started" ]; then
    grep -qx mariadb "$RUN/started" && { $SUDO /etc/init.d/mariadb stop >/dev/null 2>&1 || true; }
    grep -qx munge "$RUN/started" && { $SUDO /etc/init.d/munge stop >/dev/null 2>&1 || true; }
    $SUDO rm -f "$RUN/started"
  fi
  say "stopped"
}

cmd_status() {
  for d in slurmctld slurmd slurmdbd; do
    if running "$d"; then echo "$d: running"; else echo "$d: stopped"; fi
  done
  [ -f "$CONF" ] && head -n1 "$CONF"
  sinfo 2>/dev/null || true
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start [--no-accounting] | stop | status" >&2; exit 2 ;;
esac
