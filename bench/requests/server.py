"""The host side of bench/requests.sh: HTTP/1.1 on 127.0.0.1:PORT, keep-alive, each answer
(200, body "ok") in one write, so only the client's writes are measured."""
import socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            line = self.rfile.readline()
            if not line: return
            n = 0
            while line not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"): n = int(line.split(b":")[1])
                line = self.rfile.readline()
            self.rfile.read(n)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
class S(socketserver.ThreadingMixIn, socketserver.TCPServer): allow_reuse_address = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
