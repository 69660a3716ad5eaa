#!/usr/bin/env bash
# Start a real single-node Slurm on this machine, for trying `snakemake --profile slurm`
# (and for tests/test_slurm.py). Debian/Ubuntu only; needs root.
#
#   sudo tests/slurm/start_slurm.sh            # install if missing, configure, start
#   tests/slurm/start_slurm.sh --check         # exit 0 if a usable Slurm is already up
#   tests/slurm/start_slurm.sh --no-install    # never call apt-get
#
# What it does (idempotent, safe to run twice):
#   1. installs `slurm-wlm` and `munge` from the distribution if slurmctld is missing;
#   2. writes a munge key (if none) and starts munged;
#   3. writes /etc/slurm/slurm.conf: SlurmctldHost=$(hostname), one node with this
#      machine's CPUs and ~90% of its memory, select/cons_tres, no accounting
#      (accounting_storage/none, so status comes from squeue: MinJobAge=600 keeps
#      finished jobs visible there for 10 minutes), no cgroups (works in containers);
#   4. starts slurmctld and slurmd and waits until the node is idle.
# It does not touch an existing slurm.conf that it did not write (marker line below),
# so it never reconfigures a machine that already belongs to a real cluster.
# Exit codes: 0 ready, 2 cannot install/start here (the reason is on stderr).
set -uo pipefail

MARK="# written by negfree tests/slurm/start_slurm.sh"
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
INSTALL=1
CHECK_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK_ONLY=1 ;;
        --no-install) INSTALL=0 ;;
        -h|--help) sed -n 2,19p "$0"; exit 0 ;;
        *) echo "start_slurm.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

die() { echo "start_slurm.sh: $*" >&2; exit 2; }
log() { echo "start_slurm.sh: $*" >&2; }

# A node counts as usable when sinfo reports it idle/mixed/allocated (not down/drained).
slurm_ready() {
    command -v sinfo >/dev/null 2>&1 || return 1
    local states
    states=$(timeout 10 sinfo -h -N -o '%t' 2>/dev/null) || return 1
    echo "$states" | grep -Eq '^(idle|mix|alloc|comp)'
}

if slurm_ready; then
    log "Slurm is up: $(sinfo -h -N -o '%N %t %c CPUs' | head -1)"
    exit 0
fi
[ "$CHECK_ONLY" = 1 ] && die "no running Slurm found"
[ "$(id -u)" = 0 ] || die "needs root to install and start Slurm daemons"

# 1. packages
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    [ "$INSTALL" = 1 ] || die "slurmctld/munged not installed and --no-install given"
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install slurm-wlm and munge by hand"
    log "installing slurm-wlm and munge from apt (a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >/tmp/negfree-slurm-apt.log 2>&1; then
        apt-get update -q >>/tmp/negfree-slurm-apt.log 2>&1 || die "apt-get update failed (no package mirror?): see /tmp/negfree-slurm-apt.log"
        apt-get install -y -q --no-install-recommends slurm-wlm munge >>/tmp/negfree-slurm-apt.log 2>&1 \
            || die "apt-get install slurm-wlm munge failed: see /tmp/negfree-slurm-apt.log"
    fi
fi
for bin in slurmctld slurmd munged sbatch squeue scontrol; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin missing after install"
done

# 2. munge: a key readable only by the munge user, then the daemon (as that user)
MUNGE_USER=munge
id "$MUNGE_USER" >/dev/null 2>&1 || MUNGE_USER=root
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R "$MUNGE_USER": /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 700 /etc/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [ "$MUNGE_USER" = root ]; then
        munged --force || die "munged did not start"
    else
        runuser -u "$MUNGE_USER" -- munged || die "munged did not start"
    fi
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null 2>&1 || die "munge round trip fails"
fi

# 3. slurm.conf (only ours: never overwrite a site configuration)
HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$SPOOL_DIR"
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to change it"
fi
cat >"$CONF" <<EOF
$MARK
ClusterName=negfree
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# no cgroups: works inside containers and sandboxes
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no accounting daemon: job status via squeue; finished jobs stay visible 10 minutes
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldTimeout=60
SlurmdTimeout=60
MpiDefault=none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
# the Debian packages also read the file from here on some releases
[ -d /etc/slurm-llnl ] && ! [ -e /etc/slurm-llnl/slurm.conf ] && ln -s "$CONF" /etc/slurm-llnl/slurm.conf

# 4. daemons
if ! timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
    slurmctld -c 2>>"$LOG_DIR/start.err" || slurmctld 2>>"$LOG_DIR/start.err" || die "slurmctld did not start: $(tail -3 "$LOG_DIR/slurmctld.log" 2>/dev/null)"
fi
for _ in $(seq 30); do timeout 10 scontrol ping 2>/dev/null | grep -q UP && break; sleep 1; done
timeout 10 scontrol ping 2>/dev/null | grep -q UP || die "slurmctld not answering: $(tail -3 "$LOG_DIR/slurmctld.log" 2>/dev/null)"
if [ ! -e /run/slurmd.pid ] || ! kill -0 "$(cat /run/slurmd.pid 2>/dev/null)" 2>/dev/null; then
    slurmd 2>>"$LOG_DIR/start.err" || die "slurmd did not start: $(tail -3 "$LOG_DIR/slurmd.log" 2>/dev/null)"
fi
for _ in $(seq 60); do
    slurm_ready && break
    # a node left down/drained by an earlier run comes back
    if sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(down|drain|drng|fail)'; then
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 1
done
slurm_ready || die "node never became idle: $(sinfo -N 2>&1 | tail -2); $(tail -3 "$LOG_DIR/slurmd.log" 2>/dev/null)"
log "Slurm is up: $(sinfo -h -N -o '%N %t %c CPUs %m MB')"
