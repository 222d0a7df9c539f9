"""A curious student's port squatter (run as another unix user with the system python3).

Commands on stdin, one per line; results on stdout:
  take PORT SECONDS  keep trying to bind PORT (127.0.0.1, then every interface) for SECONDS;
                     prints "TOOK PORT" and then serves it, or "BLOCKED PORT"
  hold               binds a free port and serves it; prints "HOLD PORT"
Every request a served port receives is printed as "REQUEST PORT <request line>", and answered
200 with a JSON body that looks like anything a client might want (it proves nothing).
"""

import socket
import sys
import threading
import time

BODY = b'{"proof": "0000", "started": "2026-01-01T00:00:00Z", "squatter": true}'


def serve(sock, port):
    while True:
        conn, _ = sock.accept()
        try:
            conn.settimeout(5)
            data = conn.recv(65536)
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            print(f"REQUEST {port} {line}", flush=True)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % len(BODY) + BODY)
        except OSError:
            pass
        finally:
            conn.close()


def bind(host, port):
    s = socket.socket()
    try:
        s.bind((host, port))
        s.listen(64)
        return s
    except OSError:
        s.close()
        return None


def take(port, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for host in ("127.0.0.1", "0.0.0.0"):
            s = bind(host, port)
            if s is not None:
                print(f"TOOK {port}", flush=True)
                threading.Thread(target=serve, args=(s, port), daemon=True).start()
                return
        time.sleep(0.001)  # a busy loop, as an attacker would run it
    print(f"BLOCKED {port}", flush=True)


for command in sys.stdin:
    words = command.split()
    if words[:1] == ["take"]:
        threading.Thread(target=take, args=(int(words[1]), float(words[2])), daemon=True).start()
    elif words[:1] == ["hold"]:
        s = bind("127.0.0.1", 0)
        port = s.getsockname()[1]
        threading.Thread(target=serve, args=(s, port), daemon=True).start()
        print(f"HOLD {port}", flush=True)
