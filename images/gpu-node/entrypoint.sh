#!/bin/bash
# rcsc3 GPU node container: start munged, then slurmd in the foreground.
# The cluster's /etc/slurm (slurm.conf, gres.conf, cgroup.conf) and /etc/munge/munge.key
# are bind-mounted from the host; so are /home and the GPUs (docs/deploy.md).
set -euo pipefail
for f in /etc/munge/munge.key /etc/slurm/slurm.conf; do
    if [ ! -r "$f" ]; then
        echo "rcsc3-node: $f is missing: bind-mount it from the cluster" >&2
        exit 1
    fi
done
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
install -d -m 0755 /var/spool/slurmd /var/log/slurm
# the shared X11/ICE socket dirs, root-owned as systemd-tmpfiles makes them on a booted node: the
# first student's desktop would otherwise own them, and could delete everyone's sockets in them
install -d -o root -g root -m 1777 /tmp/.X11-unix /tmp/.ICE-unix
exec /usr/sbin/slurmd -D "$@"
