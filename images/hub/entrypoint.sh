#!/bin/bash
# rcsc3 hub container: start munged (root), then JupyterHub as the unprivileged `jupyterhub`.
set -euo pipefail
if [ ! -r /etc/munge/munge.key ] || [ ! -r /etc/slurm/slurm.conf ]; then
    echo "rcsc3-hub: bind-mount the cluster's /etc/munge/munge.key and /etc/slurm/slurm.conf" >&2
    exit 1
fi
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
cd /var/lib/rcsc3/hub
exec runuser -u jupyterhub -- /opt/rcsc3/venv/bin/jupyterhub -f /etc/rcsc3/jupyterhub_config.py "$@"
