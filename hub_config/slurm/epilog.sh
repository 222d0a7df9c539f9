#!/bin/bash
# rcsc3 Slurm epilog (runs as root on the node when a job ends; `rcsc3 lab up` installs it
# as /etc/slurm/rcsc3-epilog.sh). It removes what a finished job's user left behind:
# remote-desktop processes (Xvnc, the xfce session, dbus, agents), ipengine/ipcontroller
# processes, X lock files and sockets, session-manager (ICE) sockets and ICE-auth scripts, the
# agents' and session buses' sockets, and rcsc3's private desktop runtime directories.
#
# * The user has no other job on this node: every process of the user here is killed.
# * The user still has a job here: only processes that carry this job's SLURM_JOB_ID
#   in their environment are killed (daemonized ones included: they keep the variable),
#   and only X locks/sockets/runtime dirs whose owning process is gone are removed.
#
# An epilog that fails drains the node, so this script always exits 0 and logs instead.

set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin

job="${SLURM_JOB_ID:-}"
user="${SLURM_JOB_USER:-}"
log() { logger -t rcsc3-epilog "job $job user $user: $*" 2>/dev/null || true; [ -n "${RCSC3_EPILOG_VERBOSE:-}" ] && echo "rcsc3-epilog: $*" >&2; return 0; }

[ -n "$user" ] && [ -n "$job" ] || exit 0
uid=$(id -u "$user" 2>/dev/null) || exit 0
[ "$uid" -ge 1000 ] || exit 0   # never touch root or system accounts

# Does the user have another job (running or still completing) on this node?
other_jobs() {
    local node ids
    node=$(hostname -s)
    # bounded: a slow or down slurmctld must not hang the epilog
    if ! ids=$(timeout 10 squeue -h -u "$user" -w "$node" -t RUNNING,COMPLETING,SUSPENDED -o %A 2>/dev/null); then
        return 0   # unknown: assume yes, the careful choice
    fi
    grep -qvx -- "$job" <<<"$ids"
}
[ -n "${RCSC3_EPILOG_OTHER_JOBS:-}" ] && other_jobs() { [ "$RCSC3_EPILOG_OTHER_JOBS" = 1 ]; }  # tests

# Live processes only: a zombie is already dead (waiting for its new parent, often init, to
# reap it); waiting for it to "exit" only delays the end of the job.
user_pids() { ps -U "$uid" -o pid=,stat= 2>/dev/null | awk '$2 !~ /^Z/ {print $1}' || true; }

job_pids() {
    local pid
    for pid in $(user_pids); do
        tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SLURM_JOB_ID=$job" && echo "$pid"
    done
}

if other_jobs; then
    scope="this job's processes"; list=job_pids
else
    scope="all of the user's processes"; list=user_pids
fi

# SIGTERM, a short grace period, then SIGKILL until nothing is left (bounded).
pids=$($list)
if [ -n "$pids" ]; then
    log "killing $scope: $(echo $pids)"
    kill -TERM $pids 2>/dev/null
    kill -CONT $pids 2>/dev/null
    for _ in $(seq 20); do
        pids=$($list); [ -z "$pids" ] && break
        sleep 0.1
    done
    for _ in $(seq 30); do
        pids=$($list); [ -z "$pids" ] && break
        kill -KILL $pids 2>/dev/null
        sleep 0.1
    done
    [ -n "$pids" ] && log "still alive after SIGKILL: $(echo $pids)"
fi

# Alive = exists and is not a zombie (a zombie X server holds no display).
pid_alive() { [ -n "$1" ] && ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'; }

# X locks and sockets of the user whose server is gone. A lock file holds the X server's pid.
for lock in /tmp/.X*-lock; do
    [ -f "$lock" ] && [ "$(stat -c %u "$lock")" = "$uid" ] || continue
    n=${lock#/tmp/.X}; n=${n%-lock}
    xpid=$(tr -dc 0-9 <"$lock" 2>/dev/null)
    pid_alive "$xpid" && continue
    log "removing $lock and /tmp/.X11-unix/X$n"
    rm -f "$lock"
    [ -S "/tmp/.X11-unix/X$n" ] && [ "$(stat -c %u "/tmp/.X11-unix/X$n")" = "$uid" ] && rm -f "/tmp/.X11-unix/X$n"
done
# Sockets without a lock: X servers started with -displayfd (ours) write no lock file.
# Remove the user's sockets that nothing listens on any more.
listening=$(ss -xlH 2>/dev/null | awk '{print $5}')
for sock in /tmp/.X11-unix/X*; do
    [ -S "$sock" ] && [ "$(stat -c %u "$sock")" = "$uid" ] || continue
    n=${sock#/tmp/.X11-unix/X}
    [ -e "/tmp/.X$n-lock" ] && continue
    grep -qxF -- "$sock" <<<"$listening" && continue
    log "removing $sock"; rm -f "$sock"
done

# Session-manager (ICE) sockets /tmp/.ICE-unix/<pid> of the user's xfce4-session, left by a
# session killed above. A later xfce4-session that gets the same pid cannot listen and exits,
# ending that student's desktop at once. Removed when nothing listens on them any more.
for sock in /tmp/.ICE-unix/[0-9]*; do
    [ -S "$sock" ] && [ "$(stat -c %u "$sock")" = "$uid" ] || continue
    grep -qxF -- "$sock" <<<"$listening" && continue
    log "removing $sock"; rm -f "$sock"
done

# xfce4-session's ICE-auth clean-up scripts /tmp/.xfsm-ICE-XXXXXX: run by the session at its exit,
# which a killed session never reaches. Removed once the session they name (/tmp/.ICE-unix/<pid>)
# is gone. (The supervisor runs and removes them itself when it closes a desktop.)
for f in /tmp/.xfsm-ICE-*; do
    [ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c %u "$f")" = "$uid" ] || continue
    spid=$(grep -o -m1 '/\.ICE-unix/[0-9]*' "$f" 2>/dev/null | head -n1 | tr -dc 0-9)
    pid_alive "$spid" && continue
    log "removing $f"; rm -f -- "$f"
done
# Sockets of a killed session's agent and bus: ssh-agent's /tmp/ssh-XXXX/agent.<pid> (and its
# directory) and dbus-daemon's /tmp/dbus-XXXX, once nothing listens on them any more.
for sock in /tmp/ssh-*/agent.* /tmp/dbus-*; do
    dir=$(dirname -- "$sock")
    [ -S "$sock" ] && [ ! -L "$sock" ] && [ ! -L "$dir" ] && [ "$(stat -c %u "$sock")" = "$uid" ] || continue
    grep -qxF -- "$sock" <<<"$listening" && continue
    log "removing $sock"; rm -f -- "$sock"
    [ "$dir" != /tmp ] && [ "$(stat -c %u "$dir")" = "$uid" ] && rmdir -- "$dir" 2>/dev/null
done

# rcsc3's private desktop runtime dirs (0700, owned by the user). In use while a
# process of the user holds its web socket open; otherwise stale.
for dir in /tmp/rcsc3-desktop-"$user"-* /run/user/"$uid"/rcsc3-desktop-"$user"-*; do
    [ -d "$dir" ] && [ ! -L "$dir" ] && [ "$(stat -c %u "$dir")" = "$uid" ] || continue
    if [ -n "$(user_pids)" ] && [ -S "$dir/web.sock" ] && ss -xlH 2>/dev/null | grep -qF "$dir/web.sock"; then
        continue
    fi
    log "removing $dir"
    rm -rf --one-file-system -- "$dir"
done
exit 0
