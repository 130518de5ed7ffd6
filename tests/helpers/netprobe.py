"""Tiny network probe run on simulated hosts: who does a packet appear to come from?

    netprobe.py recv udp|tcp PORT TIMEOUT     print "ip:port" of the first sender, exit 0
                                              (exit 1 if nothing arrived in TIMEOUT s)
    netprobe.py send udp|tcp HOST PORT SRCPORT  send one message from local port SRCPORT
"""

import socket
import sys


def recv(proto: str, port: int, timeout: float) -> int:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.settimeout(timeout)
    print("ready", flush=True)
    try:
        if proto == "udp":
            _, (ip, sport) = s.recvfrom(2048)
        else:
            s.listen(1)
            conn, (ip, sport) = s.accept()
            conn.recv(2048)
    except socket.timeout:
        return 1
    print(f"{ip}:{sport}", flush=True)
    return 0


def send(proto: str, host: str, port: int, sport: int) -> int:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.settimeout(3)
    if proto == "udp":
        for _ in range(3):  # a lost datagram is not what we test
            s.sendto(b"probe", (host, port))
    else:
        s.connect((host, port))
        s.sendall(b"probe")
    return 0


if __name__ == "__main__":
    verb, proto = sys.argv[1], sys.argv[2]
    if verb == "recv":
        sys.exit(recv(proto, int(sys.argv[3]), float(sys.argv[4])))
    sys.exit(send(proto, sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
