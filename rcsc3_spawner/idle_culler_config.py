# jupyterhub-idle-culler's config file (its --config), for the service rcsc3_spawner.idle_culler makes:
# culling decided per profile (each profile's idle_timeout).
from rcsc3_spawner.idle_culler import cull_arbiter

c.IdleCuller.cull_arbiter_hook = cull_arbiter  # noqa: F821 -- `c` is the config object traitlets provides
