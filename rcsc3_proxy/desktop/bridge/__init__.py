"""The `desktop-vnc` websocket bridge (bridge "raw"): `handler` moves the bytes, `rfb_prelude` answers
the RFB handshake next to Xvnc."""

from .handler import BRIDGE_HEADER, VncBridgeHandler, handler_for, install

__all__ = ["BRIDGE_HEADER", "VncBridgeHandler", "handler_for", "install"]
