#!/usr/bin/env python3
"""A minimal Docker registry token server (distribution "token" auth), for bearer-auth tests.

Usage: token_server.py PORT KEY_PEM CERT_PEM SERVICE ISSUER USER PASSWORD

GET /token?service=...&scope=repository:<name>:<actions> with HTTP basic auth USER:PASSWORD
returns {"token": <ES256 JWT>, "access_token": ..., "expires_in": 300} granting the requested
actions; without (or with wrong) credentials it answers 401. The JWT header carries the
certificate as x5c, which the registry checks against its rootcertbundle. Loopback only.
"""

import base64
import http.server
import json
import os
import sys
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PORT, KEY, CERT, SERVICE, ISSUER, USER, PASSWORD = sys.argv[1:8]
key = serialization.load_pem_private_key(open(KEY, "rb").read(), None)
cert_der = x509.load_pem_x509_certificate(open(CERT, "rb").read()).public_bytes(serialization.Encoding.DER)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims):
    header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(cert_der).decode()]}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path != "/token":
            self.send_error(404)
            return
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"details":"invalid credentials"}')
            return
        q = urllib.parse.parse_qs(url.query)
        access = []
        for scope in q.get("scope", []):
            for part in scope.split(" "):
                kind, _, rest = part.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository":
                    access.append({"type": "repository", "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = jwt(
            {
                "iss": ISSUER,
                "sub": USER,
                "aud": q.get("service", [SERVICE])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": base64.b16encode(os.urandom(8)).decode(),
                "access": access,
            }
        )
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("127.0.0.1", int(PORT)), Handler).serve_forever()
