#!/usr/bin/env python3
"""connflood.py ADDR SECONDS HOLD [SOURCE]: one client address floods a
checkin node with connections. From SOURCE (default 127.0.0.2) it opens
HOLD connections to ADDR (host:port) and keeps them open, then for SECONDS
opens more, one after another as fast as it can, each sending a /readyz
request and reading the answer; it prints a progress line every second and
then what the node did with them: served (200), refused with 429, or closed
without an answer. Used by connflood.sh against http.max-conns-per-ip."""
import socket
import sys
import time

REQUEST = b"GET /readyz HTTP/1.1\r\nHost: checkin\r\n\r\n"


def connect(host, port, source):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(2)
    s.connect((host, port))
    return s


def main():
    addr, secs, hold = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    source = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.2"
    host, port = addr.rsplit(":", 1)
    port = int(port)
    held = []
    for _ in range(hold):
        s = connect(host, port, source)
        s.sendall(REQUEST)
        if not s.recv(4096).startswith(b"HTTP/1.1 200"):
            sys.exit(f"connflood: connection {len(held) + 1} of the {hold} held was not served")
        held.append(s)
    counts = {"served": 0, "429": 0, "closed": 0}
    start = time.time()
    end, next_report = start + secs, start + 1
    while time.time() < end:
        try:
            s = connect(host, port, source)
            s.sendall(REQUEST)
            answer = s.recv(4096)
            s.close()
            if answer.startswith(b"HTTP/1.1 200"):
                counts["served"] += 1
            elif answer.startswith(b"HTTP/1.1 429"):
                counts["429"] += 1
            else:
                counts["closed"] += 1
        except OSError:
            counts["closed"] += 1
        if time.time() >= next_report:
            n = sum(counts.values())
            print(f"flood {time.time() - start:4.0f}s  connections {n}  served {counts['served']}  429 {counts['429']}  closed {counts['closed']}", file=sys.stderr, flush=True)
            next_report += 1
    n = sum(counts.values())
    print(f"flood from {source}: {hold} held, then {n} connections in {secs:.0f}s ({n / secs:.0f}/s): "
          f"served {counts['served']}, 429 {counts['429']}, closed without an answer {counts['closed']}")
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
