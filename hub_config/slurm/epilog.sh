#!/bin/bash
# rcsc3 Slurm epilog: runs as root on the node when a job ends (`rcsc3 lab up` installs it as
# /etc/slurm/rcsc3-epilog.sh; on a cluster install it there on every GPU node, root:root 0755).
#
# It removes what a finished job's student left behind: remote-desktop processes (Xvnc, the xfce
# session, dbus, agents) and ipengine/ipcontroller processes that escaped the job, X lock files and
# sockets, session-manager (ICE) sockets and ICE-auth scripts, agents' and buses' sockets, and
# rcsc3's private desktop runtime directories. The work is rcsc3_proxy/epilog.py, run with the node
# venv's Python in isolated mode (-I: no PYTHONPATH, no user site); it kills through pidfds and
# cleans files as the student, never following their symlinks or reading more than a few KiB.
#
# The whole run is bounded (RCSC3_EPILOG_TIMEOUT seconds, default 60; keep it below slurm.conf's
# PrologEpilogTimeout), and it always exits 0: an epilog that fails drains the node.

RCSC3_VENV=/opt/rcsc3/venv   # the node venv: the same path as c.RcSC3Spawner.node_venv

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
timeout --kill-after=5 "${RCSC3_EPILOG_TIMEOUT:-60}" "$RCSC3_VENV/bin/python" -I -m rcsc3_proxy.epilog \
    || logger -t rcsc3-epilog "job ${SLURM_JOB_ID:-?} user ${SLURM_JOB_USER:-?}: epilog ended with status $?"
exit 0
