"""The `desktop-vnc` websocket: `route` guards it and installs it for either bridge, `handler` is
the raw bridge into Xvnc's unix socket, `rfb_prelude` answers the RFB handshake next to Xvnc."""
