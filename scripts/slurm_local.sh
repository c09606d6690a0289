#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to run the cluster path for real: the slow tests
# (tests/test_slurm.py starts and stops it) and anyone trying `provider: slurm` on a laptop.
#
#   scripts/slurm_local.sh start    # install Debian's slurm-wlm and munge if needed, start munged,
#                                   # slurmctld and slurmd; returns when the node is idle
#   scripts/slurm_local.sh stop     # stop the three daemons (the configuration stays)
#   scripts/slurm_local.sh status   # sinfo, or "not running"
#
# Idempotent: start on a running cluster and stop on a stopped one do nothing. Needs root (or
# sudo). One partition `debug` with this machine's cores, no cgroups (proctrack/linuxproc,
# task/none), as measured in shared/install-notes.md. Everything it writes lives under
# /etc/slurm, /etc/munge, /var/spool/slurm*, /var/log/slurm and /run.
set -euo pipefail

action=${1:-status}
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
host=$(hostname -s)
# every core: nproc alone honours OMP_NUM_THREADS, which the test runner sets to 1
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
conf=/etc/slurm/slurm.conf

running() { pgrep -x "$1" >/dev/null 2>&1; }

install_packages() {
  if ! dpkg -s slurm-wlm munge >/dev/null 2>&1; then
    echo "slurm_local: installing slurm-wlm and munge"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

write_config() {
  local memory
  memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  $sudo_cmd mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  $sudo_cmd tee "$conf.new" >/dev/null <<CONF
# Written by dendrite-campaign's scripts/slurm_local.sh: a one-node cluster for tests.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
KillWait=5
# Parsl reads a block's state with squeue when there is no accounting (sacct), and squeue
# forgets a job MinJobAge seconds after it ends: the default 300 s lets Parsl see it end.
MinJobAge=300
NodeName=$host CPUs=$cores RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  if cmp -s "$conf.new" "$conf"; then
    $sudo_cmd rm -f "$conf.new"
  else
    $sudo_cmd mv "$conf.new" "$conf"
    # a cluster started with another configuration takes this one
    if running slurmctld; then $sudo_cmd scontrol reconfigure; fi
  fi
}

start() {
  install_packages
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then $sudo_cmd mungekey -c -f; else $sudo_cmd create-munge-key -f; fi
    $sudo_cmd chown munge:munge /etc/munge/munge.key
    $sudo_cmd chmod 400 /etc/munge/munge.key
  fi
  $sudo_cmd mkdir -p /run/munge /var/log/munge /var/lib/munge
  $sudo_cmd chown munge:munge /run/munge /var/log/munge /var/lib/munge
  $sudo_cmd chmod 0755 /run/munge
  running munged || $sudo_cmd munged --force
  write_config
  running slurmctld || $sudo_cmd slurmctld
  running slurmd || $sudo_cmd slurmd
  for _ in $(seq 1 120); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "^idle|^mixed|^allocated"; then
      echo "slurm_local: node $host up ($cores cores, partition debug)"
      return 0
    fi
    $sudo_cmd scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 0.5
  done
  echo "slurm_local: the node did not come up; see /var/log/slurm/" >&2
  return 1
}

stop() {
  # job steps outlive slurmd; a stopped cluster runs nothing
  for daemon in slurmstepd slurmd slurmctld munged; do
    running "$daemon" && $sudo_cmd pkill -x "$daemon"
  done
  for _ in $(seq 1 60); do
    running slurmd || running slurmctld || running munged || { echo "slurm_local: stopped"; return 0; }
    sleep 0.25
  done
  for daemon in slurmd slurmctld munged; do
    running "$daemon" && $sudo_cmd pkill -9 -x "$daemon"
  done
  echo "slurm_local: stopped (killed)"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  status) if running slurmctld; then sinfo; else echo "slurm_local: not running"; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
