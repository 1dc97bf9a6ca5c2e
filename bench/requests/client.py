"""The box side of bench/requests.sh: POSTs of 2000 bytes to the host on one reused
connection, the request in one write or in two (head, then body, as many HTTP clients send
it); prints the median round trip of each (python3-minimal has no http.client)."""
import socket, time, sys
port = int(sys.argv[1])
s = socket.create_connection(("10.0.2.2", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
body = b"x" * 2000
head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body)
def post(split):
    t = time.monotonic()
    if split:
        s.sendall(head); s.sendall(body)
    else:
        s.sendall(head + body)
    buf = b""
    while b"\r\n\r\nok" not in buf:
        buf += s.recv(4096)
    return (time.monotonic() - t) * 1000
def median(v):
    v = sorted(v); return v[len(v) // 2]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
post(False)  # the connection's first request is answered before delayed ACKs start
one, two = [], []
for _ in range(runs):
    one.append(post(False))
    two.append(post(True))
print("%.2f %.2f" % (median(one), median(two)))
