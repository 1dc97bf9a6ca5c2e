#!/usr/bin/env python3
"""TCP relay from a network namespace to this host's loopback, for the CNI e2e tests.

Usage: netns_relay.py NETNS PORT
Listens on 127.0.0.1:PORT inside /run/netns/NETNS and relays each connection to 127.0.0.1:PORT
in the namespace this process started in (a test registry). The listening socket is created
after setns(2) into NETNS, then the process returns to its own namespace, so its outgoing
connections are made there: a socket stays in the namespace it was created in.
Prints "ready" once listening; exits when stdin closes (the test ended).
"""
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: " + os.strerror(err))


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(listener, port):
    while True:
        conn, _ = listener.accept()
        try:
            up = socket.create_connection(("127.0.0.1", port), timeout=30)
            up.settimeout(None)
        except OSError:
            conn.close()
            continue
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()


def main():
    netns, port = sys.argv[1], int(sys.argv[2])
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(os.path.join("/run/netns", netns), os.O_RDONLY)
    setns(target)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    setns(home)
    threading.Thread(target=serve, args=(listener, port), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
