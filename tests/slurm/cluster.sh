#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the cluster tests (tests/test_slurm.py) and for
# trying profiles/slurm by hand. Debian 12, run as root; no systemd needed (daemons started by hand).
#
#   tests/slurm/cluster.sh start        install (if missing), configure, start; wait until the node is idle
#   tests/slurm/cluster.sh stop [NAME]  stop the daemons this script started (all, or only the NAMEs given)
#   tests/slurm/cluster.sh status       what runs, what this script started
#
# `start` is idempotent: daemons already running are left alone (and not recorded as ours), so a
# second `start` starts nothing and a `stop` never touches daemons someone else started. Its last
# line of output is `started: <names>` (possibly empty): the daemons this very call started, for a
# caller that wants to stop exactly those (`stop <names>`).
#
# Accounting runs through slurmdbd + MariaDB, so plain `sacct` works as on real clusters (the
# Snakemake SLURM plugin queries job states with sacct).
#
# Environment: MIMIX_SLURM_STATE (default /run/mimix-slurm: pid records), MIMIX_SLURM_TIMEOUT
# (seconds to wait for each daemon, default 60), MIMIX_SLURM_HEADROOM_MB (memory kept from SLURM,
# default 2048), MIMIX_SLURM_ACCOUNT (default mimix).
set -euo pipefail

STATE=${MIMIX_SLURM_STATE:-/run/mimix-slurm}
TIMEOUT=${MIMIX_SLURM_TIMEOUT:-60}
HEADROOM_MB=${MIMIX_SLURM_HEADROOM_MB:-2048}
ACCOUNT=${MIMIX_SLURM_ACCOUNT:-mimix}
CLUSTER=localcluster
PARTITION=main
MARKER="# written by mimix tests/slurm/cluster.sh"
NODE=$(hostname -s)
CONF_DIR=/etc/slurm
SLURM_CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
MARIADB_PID=/run/mysqld/mariadbd.pid
MARIADB_SOCK=/run/mysqld/mysqld.sock
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; stop in reverse

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

pidfile_of() {
  case $1 in
    munged) echo /run/munge/munged.pid ;;
    mariadbd) echo "$MARIADB_PID" ;;
    slurmdbd) echo /run/slurm/slurmdbd.pid ;;
    slurmctld) echo /run/slurm/slurmctld.pid ;;
    slurmd) echo /run/slurm/slurmd.pid ;;
    *) die "unknown daemon $1" ;;
  esac
}

# The pid of a running daemon (from its pid file, checked against /proc), or nothing.
running_pid() {
  local pidfile pid comm
  pidfile=$(pidfile_of "$1")
  [ -r "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  comm=$(cat "/proc/$pid/comm")
  [ "$comm" = "$1" ] || return 1
  echo "$pid"
}

# Waits (time-boxed) until a command succeeds.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${TIMEOUT} s waiting for $what"
    sleep 0.5
  done
}

record_started() {  # name pid
  mkdir -p "$STATE"
  echo "$2" >"$STATE/$1.pid"
  STARTED+=("$1")
}

install_packages() {
  local missing=()
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sinfo >/dev/null \
    || missing+=(slurm-wlm)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq
  # Debian's maintainer scripts may try to start the services; tell invoke-rc.d not to (policy-rc.d).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    [ "$created_policy" -eq 1 ] && rm -f "$policy"
    die "apt-get install ${missing[*]} failed"
  }
  [ "$created_policy" -eq 1 ] && rm -f "$policy"
  return 0
}

# A file we may (re)write: absent, or written by this script before.
ours_or_absent() { [ ! -e "$1" ] || grep -qF "$MARKER" "$1"; }

write_configs() {
  mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
  local total_mb real_mb
  total_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  real_mb=$((total_mb - HEADROOM_MB))
  [ "$real_mb" -ge 1000 ] || real_mb=$((total_mb * 3 / 4))
  local cpus
  cpus=${MIMIX_SLURM_CPUS:-$(nproc)}

  ours_or_absent "$SLURM_CONF" || die "$SLURM_CONF exists and was not written by this script; not touching it"
  local tmp
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
$MARKER
# Single node on localhost; every path is Debian's default unless set here.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=300
DefMemPerCPU=1000
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoreFlags=job_comment
NodeName=$NODE CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$real_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$tmp" "$SLURM_CONF"; then
    [ -z "$(running_pid slurmctld)$(running_pid slurmd)" ] \
      || log "warning: $SLURM_CONF changed while slurmctld/slurmd run; they keep the old one until restarted"
    install -m 644 "$tmp" "$SLURM_CONF"
  fi
  rm -f "$tmp"

  ours_or_absent "$DBD_CONF" || die "$DBD_CONF exists and was not written by this script; not touching it"
  local pass
  pass=$(sed -n 's/^StoragePass=//p' "$DBD_CONF" 2>/dev/null || true)
  [ -n "$pass" ] || pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  DB_PASS=$pass
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
$MARKER
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
  cmp -s "$tmp" "$DBD_CONF" || install -m 600 "$tmp" "$DBD_CONF"
  rm -f "$tmp"
}

start_munged() {
  running_pid munged >/dev/null && return 0
  [ -s /etc/munge/munge.key ] || {
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then mungekey --create --force; else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  }
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged 9>&-
  wait_for "munged" running_pid munged
  wait_for "munge credentials" bash -c 'munge -n | unmunge'
  record_started munged "$(running_pid munged)"
}

start_mariadbd() {
  if ! running_pid mariadbd >/dev/null; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if [ ! -d /var/lib/mysql/mysql ]; then
      log "initialising the MariaDB data directory"
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    fi
    # mariadbd stays in the foreground: detach it; its pid file identifies it afterwards.
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --socket="$MARIADB_SOCK" \
      --pid-file="$MARIADB_PID" --log-error=/var/log/slurm/mariadbd.log </dev/null >/dev/null 2>&1 9>&- &
    wait_for "mariadbd" mariadb-admin --socket="$MARIADB_SOCK" ping
    wait_for "mariadbd pid file" running_pid mariadbd
    record_started mariadbd "$(running_pid mariadbd)"
  fi
  mariadb --socket="$MARIADB_SOCK" <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
  if ! running_pid slurmdbd >/dev/null; then
    slurmdbd 9>&-
    wait_for "slurmdbd" running_pid slurmdbd
    record_started slurmdbd "$(running_pid slurmdbd)"
  fi
  wait_for "slurmdbd answering" sacctmgr -n show cluster
  # Cluster, account and user: added once (sacctmgr refuses duplicates, so look first).
  [ -n "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster)" ] || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  [ -n "$(sacctmgr -n -P show account "$ACCOUNT" format=account)" ] \
    || sacctmgr -i add account "$ACCOUNT" Description=mimix-tests Organization=mimix >/dev/null
  [ -n "$(sacctmgr -n -P show assoc where user=root account="$ACCOUNT" format=user)" ] \
    || sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
}

start_slurm() {
  if ! running_pid slurmctld >/dev/null; then
    slurmctld 9>&-
    wait_for "slurmctld" running_pid slurmctld
    record_started slurmctld "$(running_pid slurmctld)"
  fi
  if ! running_pid slurmd >/dev/null; then
    slurmd 9>&-
    wait_for "slurmd" running_pid slurmd
    record_started slurmd "$(running_pid slurmd)"
  fi
  local deadline=$((SECONDS + TIMEOUT)) state=""
  while :; do
    state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
    case $state in
      idle | mixed | allocated | completing) break ;;  # usable (idle unless jobs run)
      drain* | down*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    [ "$SECONDS" -lt "$deadline" ] || die "node $NODE not idle after ${TIMEOUT} s (state '${state}'); see /var/log/slurm/"
    sleep 0.5
  done
  log "node $NODE is $state (partition $PARTITION, $(sinfo -h -N -n "$NODE" -o '%c CPUs, %m MB'))"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || die "must run as root"
  STARTED=()
  local t0=$SECONDS
  install_packages
  write_configs
  start_munged
  start_mariadbd
  start_slurmdbd
  start_slurm
  log "ready in $((SECONDS - t0)) s; started by this call: ${STARTED[*]:-nothing (all were running)}"
  echo "started: ${STARTED[*]:-}"
}

cmd_stop() {
  local names=("$@") name pid recorded i
  [ "${#names[@]}" -gt 0 ] || names=("${DAEMONS[@]}")
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name=${DAEMONS[i]}
    [[ " ${names[*]} " == *" $name "* ]] || continue
    [ -r "$STATE/$name.pid" ] || continue  # not started by this script
    recorded=$(cat "$STATE/$name.pid")
    pid=$(running_pid "$name" || true)
    if [ -n "$pid" ] && [ "$pid" = "$recorded" ]; then
      kill -TERM "$pid"
      local deadline=$((SECONDS + TIMEOUT))
      while [ -e "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then log "$name ($pid) ignores SIGTERM; SIGKILL"; kill -KILL "$pid" || true; fi
        sleep 0.2
      done
      log "stopped $name ($pid)"
    else
      log "$name: the recorded pid $recorded no longer runs as $name; nothing to stop"
    fi
    rm -f "$STATE/$name.pid"
  done
}

cmd_status() {
  local name pid
  for name in "${DAEMONS[@]}"; do
    pid=$(running_pid "$name" || true)
    printf '%-10s %-8s %s\n' "$name" "${pid:-down}" "$([ -r "$STATE/$name.pid" ] && echo 'started by cluster.sh')"
  done
  command -v sinfo >/dev/null && sinfo 2>/dev/null || true
}

# One call at a time (two concurrent `start`s would race for the same daemons). The daemons are
# started with fd 9 closed, so they do not inherit (and hold) the lock.
lock() { mkdir -p "$STATE"; exec 9>"$STATE/lock"; flock -w 600 9 || die "another cluster.sh holds $STATE/lock"; }

case ${1:-} in
  start) lock; cmd_start ;;
  stop) shift; lock; cmd_stop "$@" ;;
  status) cmd_status ;;
  *) echo "usage: $0 start | stop [munged mariadbd slurmdbd slurmctld slurmd] | status" >&2; exit 2 ;;
esac
