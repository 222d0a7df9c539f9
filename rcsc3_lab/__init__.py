"""rcsc3's lab: root-only provisioning of a Slurm cluster on this machine for the demo and the tests.

Neither the hub package (`rcsc3_spawner`) nor the node package (`rcsc3_proxy`) imports it.

- `cli`: the `rcsc3 lab` command (`up`, `down`, `status`, `on`, `users`)
- `onehost`: the one-host lab (`rcsc3 lab up`): one slurmd next to slurmctld on this machine
- `cluster`: the multi-host lab (`rcsc3 lab up --hosts`, `rcsc3 lab on`): hub, gpu1 and cpu1 as
  namespaces on this machine, beside the one-host lab
- `netns`: hosts made of network/UTS/mount namespaces joined by a bridge
- `nodeinit`: pid 1 of a multi-host node's PID namespace (private /tmp, /dev/shm, /run/user; slurmd)
- `slurm`: slurm.conf/gres.conf for the lab, munged, slurmctld, slurmd
- `node`: the node's (fake) GPU devices and shared X socket directories
- `packages`: the Debian packages, installed unattended
- `users`: the demo accounts
- `system`: running commands, daemons and the lab's state file
"""
