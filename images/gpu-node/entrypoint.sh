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
exec /usr/sbin/slurmd -D "$@"
