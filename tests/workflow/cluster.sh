#!/usr/bin/env bash
# A single-node SLURM cluster on loopback, for testing the workflow's SLURM profile.
#
#   tests/slurm/cluster.sh start [--accounting]   install (Debian packages) if missing, start
#   tests/slurm/cluster.sh status                 show the node and the daemons
#   tests/slurm/cluster.sh stop                   stop the daemons this script started
#   tests/slurm/cluster.sh env                    print `export SLURM_CONF=...` for clients
#
# Everything (slurm.conf, gres.conf, state, spool, logs, pid files) lives in
# $VGSALIGN_SLURM_DIR (default /tmp/vgsalign-slurm); the config files are linked into
# /etc/slurm (never replacing a real one) because the SLURM executor's job steps ignore
# SLURM_CONF. No systemd: munged, slurmctld and slurmd are started by hand, as root
# (SlurmUser=root). The node offers one pretend GPU so that --gpus requests are scheduled.
# --accounting also runs slurmdbd on a local MariaDB, so `sacct` lists the jobs and the
# SLURM executor plugin's default status command works. Without it, clients must use
# `--slurm-status-command squeue` (sacct has no data and the plugin would poll forever).
# Needs root. Exit status 3 means "this machine cannot run it" (the reason is printed).
set -euo pipefail

DIR=${VGSALIGN_SLURM_DIR:-/tmp/vgsalign-slurm}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
CLUSTER=vgsalign

say() { echo "cluster.sh: $*" >&2; }
cannot() { say "cannot run here: $*"; exit 3; }

need_root() {
    [ "$(id -u)" = 0 ] || cannot "must run as root (starts munged/slurmctld/slurmd)"
}

install_packages() {
    local packages=("$@") missing=()
    for pkg in "${packages[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} = 0 ] && return 0
    command -v apt-get >/dev/null || cannot "no apt-get to install ${missing[*]}"
    say "installing ${missing[*]}"
    apt-get update -qq >/dev/null || say "apt-get update failed; trying the install anyway"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >"$DIR/apt.log" 2>&1 || cannot "apt-get install ${missing[*]} failed (see $DIR/apt.log)"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    say "timed out after ${seconds}s waiting for $what"
    return 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already serving the default socket
    fi
    # munged runs as munge and refuses files it does not own: give it its own folder
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"
    chmod 0700 "$DIR/munge"
    runuser -u munge -- munged --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
        || cannot "munged did not start (see $DIR/munge/munged.log)"
    wait_for 10 munged sh -c 'munge -n | unmunge' || cannot "munge credentials do not round-trip"
}

write_slurm_conf() {
    local accounting=$1 mem_total real_memory cpus
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    real_memory=$((mem_total * 9 / 10))  # a little under the machine's, or the node drains
    cpus=$(nproc)
    cat >"$CONF" <<EOF
# written by tests/slurm/cluster.sh: a single-node cluster on loopback
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# no cgroups in containers: track processes through /proc, no task containment
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default memory per CPU every job takes the whole node's memory
DefMemPerCPU=1000
# finished jobs stay visible to squeue this long (the SLURM plugin polls with squeue
# when there is no accounting; it needs at least 3x its first status delay)
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
EOF
    # gres/gpu needs a device file to count; /dev/null stands in for the card
    echo "NodeName=$HOST Name=gpu File=/dev/null" >"$DIR/gres.conf"
    if [ "$accounting" = 1 ]; then
        cat >>"$CONF" <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
EOF
    else
        echo "AccountingStorageType=accounting_storage/none" >>"$CONF"
        echo "JobAcctGatherType=jobacct_gather/none" >>"$CONF"
    fi
    cat >>"$CONF" <<EOF
# one pretend GPU (a count, no device file): jobs that ask for --gpus=1 are scheduled
# as on a GPU node and run on the CPU, so GPU requests in the profile are exercised too
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_memory Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# The SLURM executor's job step drops SLURM_CONF (it clears SLURM_* variables before
# its inner srun), so that srun only finds the cluster at the default place: link our
# files into /etc/slurm. An existing configuration there is never replaced.
SYSCONF=/etc/slurm
LINKED=(slurm.conf gres.conf slurmdbd.conf)

link_config() {
    mkdir -p "$SYSCONF"
    for name in "${LINKED[@]}"; do
        local target=$SYSCONF/$name
        if [ -e "$target" ] && [ "$(readlink "$target")" != "$DIR/$name" ]; then
            cannot "$target exists and is not this script's (a real cluster is configured here)"
        fi
        ln -sfn "$DIR/$name" "$target"
    done
}

unlink_config() {
    for name in "${LINKED[@]}"; do
        [ "$(readlink "$SYSCONF/$name" 2>/dev/null)" = "$DIR/$name" ] && rm -f "$SYSCONF/$name"
    done
    return 0
}

start_accounting() {
    install_packages mariadb-server slurmdbd
    if ! mysqladmin ping >/dev/null 2>&1; then
        service mariadb start >"$DIR/mariadb.log" 2>&1 || cannot "MariaDB did not start (see $DIR/mariadb.log)"
        touch "$DIR/mariadb.started-here"
    fi
    wait_for 30 mariadb mysqladmin ping || cannot "MariaDB does not answer"
    mysql -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'vgsalign';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=vgsalign
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"  # slurmdbd refuses a world-readable config
    if ! alive "$DIR/slurmdbd.pid"; then
        # slurmdbd reads slurmdbd.conf from the folder holding SLURM_CONF
        SLURM_CONF=$CONF slurmdbd || cannot "slurmdbd did not start (see $DIR/slurmdbd.log)"
    fi
    wait_for 30 slurmdbd env SLURM_CONF="$CONF" sacctmgr -n list cluster \
        || cannot "slurmdbd does not answer (see $DIR/slurmdbd.log)"
    if ! SLURM_CONF=$CONF sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        SLURM_CONF=$CONF sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
}

start() {
    local accounting=0
    [ "${1:-}" = --accounting ] && accounting=1
    need_root
    if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && SLURM_CONF=$CONF scontrol ping >/dev/null 2>&1; then
        say "already running (stop it first to change its settings)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    mkdir -p "$DIR/state" "$DIR/spool"
    install_packages munge slurmctld slurmd slurm-client
    start_munge
    write_slurm_conf "$accounting"
    link_config
    [ "$accounting" = 1 ] && start_accounting
    export SLURM_CONF=$CONF
    # -c: start clean (no jobs or node state left from an earlier cluster in this folder)
    alive "$DIR/slurmctld.pid" || slurmctld -c || cannot "slurmctld did not start (see $DIR/slurmctld.log)"
    wait_for 20 slurmctld scontrol ping || cannot "slurmctld does not answer (see $DIR/slurmctld.log)"
    alive "$DIR/slurmd.pid" || slurmd || cannot "slurmd did not start (see $DIR/slurmd.log)"
    wait_for 30 "node $HOST idle" sh -c "sinfo -h -n $HOST -o %t | grep -qE '^(idle|mix|alloc)'" || {
        sinfo -N -l >&2 || true
        cannot "node $HOST did not come up (see $DIR/slurmd.log, $DIR/slurmctld.log)"
    }
    timeout 30 srun -N1 -t 1 hostname >/dev/null || cannot "a test job (srun hostname) did not run"
    say "running: node $HOST, partition debug, accounting $([ $accounting = 1 ] && echo slurmdbd || echo none)"
    echo "export SLURM_CONF=$CONF"
}

stop_pidfile() {
    local pidfile=$1 pid
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop() {
    export SLURM_CONF=$CONF
    [ -f "$CONF" ] && scancel --user root >/dev/null 2>&1 || true
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    stop_pidfile "$DIR/slurmdbd.pid"
    stop_pidfile "$DIR/munge/munged.pid"
    unlink_config
    if [ -f "$DIR/mariadb.started-here" ]; then
        service mariadb stop >/dev/null 2>&1 || true
        rm -f "$DIR/mariadb.started-here"
    fi
    say "stopped"
}

status() {
    export SLURM_CONF=$CONF
    for pidfile in munge/munged slurmdbd slurmctld slurmd; do
        daemon=$(basename "$pidfile")
        if alive "$DIR/$pidfile.pid"; then echo "$daemon: running (pid $(cat "$DIR/$pidfile.pid"))"
        else echo "$daemon: not running"; fi
    done
    sinfo -N -l 2>/dev/null || true
    squeue 2>/dev/null || true
}

mkdir -p "$DIR"
case "${1:-}" in
    start) shift; start "$@" ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start [--accounting] | stop | status | env" >&2; exit 1 ;;
esac
