"""Data for IPython Parallel: `ipcluster_config.py` is installed into {sys.prefix}/etc/ipython (setup.cfg data_files).

It is not meant to be imported; the defaults it applies live in `rcsc3_proxy.engines_config`.
"""
