"""The desktop's routes on the Jupyter server: `route` guards and installs them for either bridge,
`handler` is the raw bridge into Xvnc's unix socket, `rfb_prelude` answers the RFB handshake next
to Xvnc, `rfb_client` holds a viewer's input back, `viewers` and `viewers_api` say who watches and
let the owner give control or end a view."""
