#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, for testing `ftcal sweep --slurm` against real
# sbatch/squeue/scancel (job arrays, `sbatch --wait`) on any Linux box where we can be root.
#
#   scripts/local_slurm.sh up     install (if missing), configure and start munged, slurmctld, slurmd;
#                                 wait until the node is idle. Idempotent.
#   scripts/local_slurm.sh down   stop slurmd, slurmctld (and munged if `up` started it). Idempotent.
#   scripts/local_slurm.sh env    print `export SLURM_CONF=...`; the client tools need it:
#                                 eval "$(scripts/local_slurm.sh env)"
#
# Needs: Debian/Ubuntu (apt-get, for slurm-wlm and munge; Debian 12 gives Slurm 22.05), root or
# passwordless sudo, TCP ports 6817-6818 free on localhost. No systemd: the daemons are started
# directly, so it also works in a container. Everything lives under $FTCAL_SLURM_DIR (default
# /tmp/ftcal-slurm): slurm.conf, state, spool, logs, pid files; /etc/slurm is left alone.
#
# Non-default choices in slurm.conf, each so that nothing beyond the two daemons is needed:
#   ProctrackType=proctrack/linuxproc   track job processes via /proc; the default (cgroup) needs a
#                                       writable cgroup tree, which containers often lack
#   TaskPlugin=task/none                no cgroup/affinity confinement of tasks (same reason)
#   JobAcctGatherType=jobacct_gather/none, AccountingStorageType=accounting_storage/none
#                                       no accounting: no slurmdbd, no database
#   SelectType=select/cons_tres, SelectTypeParameters=CR_CPU
#                                       allocate single CPUs rather than whole nodes, so several
#                                       array tasks run at once on the one node
#   SlurmUser=root                      no slurm user or file ownership to set up
#   SlurmdParameters=config_overrides   trust the CPUs/RealMemory given here; never drain the node
#                                       because the hardware slurmd sees differs
#   ReturnToService=2                   the node comes back after `down`/`up` without scontrol
# MinJobAge stays at its default (300 s). `sbatch --wait` polls 2, 10, 42 s after submitting, then
# every 32 s (a test's jobs should end within 10 s to return quickly); with MinJobAge=24 a finished
# job was purged between polls, and sbatch printed "Job N no longer found" and exited 0.
# Job state and logs stay in $FTCAL_SLURM_DIR across `down`/`up`; if `up` fails, run `down`.
set -euo pipefail

D=${FTCAL_SLURM_DIR:-/tmp/ftcal-slurm}
CONF=$D/slurm.conf
HOST=$(hostname -s)

die() { echo "local_slurm: $*" >&2; exit 1; }
running() { [[ -e /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }  # not a zombie
# The pid in pid file $1 if that process is a running munged/slurm* daemon.
pid_of() {
  local p
  p=$(cat "$1" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] && grep -qE '^(munged|slurm)' "/proc/$p/comm" 2>/dev/null && running "$p" && echo "$p"
}
alive() { pid_of "$1" >/dev/null; }

as_root() {  # rerun this script as root, or fail
  [[ $EUID -eq 0 ]] && return
  sudo -n true 2>/dev/null || die "must run as root (or with passwordless sudo) to $1"
  exec sudo -n env FTCAL_SLURM_DIR="$D" bash "$0" "$1"
}

install_pkgs() {
  local missing=0 c
  for c in sbatch slurmctld slurmd munged; do command -v "$c" >/dev/null || missing=1; done
  ((missing)) || return 0
  command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
  echo "local_slurm: installing slurm-wlm munge" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends slurm-wlm munge; } \
    >"$D/apt.log" 2>&1 || { tail -n 20 "$D/apt.log" >&2; die "apt-get install slurm-wlm munge failed"; }
}

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  alive /run/munge/munged.pid && return
  runuser -u munge -- munged || die "munged failed to start (see /var/log/munge/munged.log)"
  touch "$D/munged.ours"
}

write_conf() {
  local mem
  mem=$(awk '/^MemTotal:/ {m = int($2 / 1024); print (m > 2048 ? m - 1024 : int(m / 2))}' /proc/meminfo)
  cat <<EOF
ClusterName=ftcal
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

stop() {  # stop the daemon whose pid file is $1; wait up to 10 s
  local p
  p=$(pid_of "$1") || return 0
  kill "$p" 2>/dev/null || true
  for _ in {1..50}; do running "$p" || return 0; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
}

down() {
  stop "$D/slurmd.pid"
  stop "$D/slurmctld.pid"
  if [[ -e $D/munged.ours ]]; then
    stop /run/munge/munged.pid
    rm -f "$D/munged.ours"
  fi
}

fail_logs() {
  local f
  for f in "$D/slurmctld.log" "$D/slurmd.log" /var/log/munge/munged.log; do
    [[ -e $f ]] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
  done
  die "$1"
}

up() {
  mkdir -p "$D/state" "$D/spool"
  chmod 0755 "$D"
  install_pkgs
  start_munge
  write_conf >"$CONF.new"
  if cmp -s "$CONF.new" "$CONF"; then rm "$CONF.new"; else
    stop "$D/slurmd.pid"; stop "$D/slurmctld.pid"
    mv "$CONF.new" "$CONF"; chmod 0644 "$CONF"
  fi
  export SLURM_CONF=$CONF
  alive "$D/slurmctld.pid" || slurmctld -f "$CONF" || fail_logs "slurmctld failed to start"
  alive "$D/slurmd.pid" || slurmd -f "$CONF" || fail_logs "slurmd failed to start"
  local i d state=
  for i in {1..60}; do
    for d in slurmctld slurmd; do  # a daemon may write its pid file just after forking
      alive "$D/$d.pid" || ((i <= 5)) || fail_logs "$d is not running"
    done
    if alive "$D/slurmctld.pid" && alive "$D/slurmd.pid"; then
      state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
      if [[ $state == idle ]]; then
        echo "local_slurm: up; node $HOST idle"
        echo "export SLURM_CONF=$CONF"
        return
      fi
    fi
    sleep 1
  done
  fail_logs "node $HOST not idle after 60 s (state: '${state:-no answer}')"
}

case ${1:-} in
  up) as_root up; up ;;
  down) as_root down; down ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) die "usage: $0 up|down|env" ;;
esac
