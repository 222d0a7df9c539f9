"""`python3 x_clipboard_owner.py TEXT`: an X program that copies TEXT to the CLIPBOARD and serves it, until another takes it.

What a student's program does when they copy something (xclip, a terminal, an editor), in plain
Xlib through ctypes, so the desktop tests need nothing beyond libX11 (no xclip or GTK on the node).
It prints "copied" once it owns the selection, and answers TARGETS, UTF8_STRING and STRING.
"""

from __future__ import annotations

import ctypes
import sys

SELECTION_CLEAR, SELECTION_REQUEST, SELECTION_NOTIFY = 29, 30, 31
XA_ATOM, XA_STRING, PROP_MODE_REPLACE = 4, 31, 0

Atom = Window = ctypes.c_ulong


class SelectionRequest(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("owner", Window), ("requestor", Window), ("selection", Atom),
                ("target", Atom), ("property", Atom), ("time", ctypes.c_ulong)]


class SelectionNotify(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("requestor", Window), ("selection", Atom), ("target", Atom),
                ("property", Atom), ("time", ctypes.c_ulong), ("pad", ctypes.c_long * 16)]


def main(text: bytes) -> int:
    x = ctypes.CDLL("libX11.so.6")
    x.XOpenDisplay.restype, x.XOpenDisplay.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    x.XDefaultRootWindow.restype, x.XDefaultRootWindow.argtypes = Window, [ctypes.c_void_p]
    x.XCreateSimpleWindow.restype = Window
    x.XCreateSimpleWindow.argtypes = [ctypes.c_void_p, Window, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                      ctypes.c_uint, ctypes.c_ulong, ctypes.c_ulong]
    x.XInternAtom.restype, x.XInternAtom.argtypes = Atom, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x.XSetSelectionOwner.argtypes = [ctypes.c_void_p, Atom, Window, ctypes.c_ulong]
    x.XChangeProperty.argtypes = [ctypes.c_void_p, Window, Atom, Atom, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                                  ctypes.c_int]
    x.XSendEvent.argtypes = [ctypes.c_void_p, Window, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    x.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    x.XFlush.argtypes = [ctypes.c_void_p]
    display = x.XOpenDisplay(None)
    if not display:
        print("cannot open the display", file=sys.stderr)
        return 1
    window = x.XCreateSimpleWindow(display, x.XDefaultRootWindow(display), 0, 0, 1, 1, 0, 0, 0)
    clipboard, utf8, targets = (x.XInternAtom(display, name, 0) for name in (b"CLIPBOARD", b"UTF8_STRING", b"TARGETS"))
    x.XSetSelectionOwner(display, clipboard, window, 0)
    x.XFlush(display)
    print("copied", flush=True)
    event = (ctypes.c_long * 24)()
    while True:
        x.XNextEvent(display, event)
        kind = ctypes.cast(event, ctypes.POINTER(ctypes.c_int))[0]
        if kind == SELECTION_CLEAR:
            return 0
        if kind != SELECTION_REQUEST:
            continue
        req = ctypes.cast(event, ctypes.POINTER(SelectionRequest)).contents
        prop = req.property or req.target
        if req.target == targets:
            offered = (ctypes.c_long * 3)(targets, utf8, XA_STRING)
            x.XChangeProperty(display, req.requestor, prop, XA_ATOM, 32, PROP_MODE_REPLACE, offered, 3)
        elif req.target in (utf8, XA_STRING):
            x.XChangeProperty(display, req.requestor, prop, req.target, 8, PROP_MODE_REPLACE, text, len(text))
        else:
            prop = 0  # refused
        notify = SelectionNotify(type=SELECTION_NOTIFY, display=display, requestor=req.requestor,
                                 selection=req.selection, target=req.target, property=prop, time=req.time)
        x.XSendEvent(display, req.requestor, 0, 0, ctypes.byref(notify))
        x.XFlush(display)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].encode()))
