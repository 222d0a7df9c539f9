"""What rcsc3 adds to the student's running Jupyter server (started by `rcsc3-singleuser`).

- `app`: the Jupyter server serving on the socket rcsc3-singleuser bound before it told the hub
  the port (no moment in which another user could take the port), with rcsc3's routes added
- `identity`: `rcsc3/api/identity`, the server's proof to the hub that it is this student's server
"""
