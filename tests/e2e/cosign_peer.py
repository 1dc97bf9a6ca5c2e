#!/usr/bin/env python3
"""An independent implementation of cosign's key-based signature formats, for interop tests.

Written from cosign's specs (SIGNATURE_SPEC.md, BUNDLE_SPEC.md) and go-securesystemslib's
encrypted-key format; shares no code with a3s-box. Uses `cryptography` (ECDSA P-256),
`hashlib.scrypt` and PyNaCl's secretbox (XSalsa20-Poly1305), and talks to the registry with
`requests` (distribution API v2, anonymous, plain HTTP on loopback only).

Subcommands (exit 0 = success / verified, 1 = not verified, 2 = usage):
  keygen DIR                         write DIR/peer.key (PKCS#8 PEM) and DIR/peer.pub
  encrypt-key PLAIN OUT PASSWORD     write PLAIN as a cosign `ENCRYPTED SIGSTORE PRIVATE KEY`
  decrypt-key KEY PASSWORD           print the public key PEM of a cosign encrypted key
  sign KEY REGISTRY REPO DIGEST [--payload-edit]
                                     push a legacy sha256-<hex>.sig signature
  sign-bundle KEY REGISTRY REPO DIGEST
                                     push an OCI 1.1 referrer with a DSSE bundle (tag fallback)
  verify PUB REGISTRY REPO DIGEST    verify the legacy .sig signatures
"""

import base64
import hashlib
import json
import os
import sys

import nacl.secret
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIG_ANN = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def b64(b):
    return base64.b64encode(b).decode()


def digest_of(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def base_url(registry):
    host = registry.split("/")[0]
    h = host.rsplit(":", 1)[0]
    if h not in ("127.0.0.1", "localhost", "[::1]"):
        sys.exit("refusing a non-loopback registry")
    return "http://" + host


def put_blob(reg, repo, data):
    d = digest_of(data)
    if requests.head(f"{reg}/v2/{repo}/blobs/{d}").status_code == 200:
        return d
    r = requests.post(f"{reg}/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = reg + loc
    sep = "&" if "?" in loc else "?"
    r = requests.put(f"{loc}{sep}digest={d}", data=data, headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return d


def put_manifest(reg, repo, ref, body, media_type):
    r = requests.put(f"{reg}/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
    r.raise_for_status()


def get_manifest(reg, repo, ref):
    r = requests.get(
        f"{reg}/v2/{repo}/manifests/{ref}",
        headers={"Accept": ",".join([OCI_MANIFEST, OCI_INDEX])},
    )
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.content


def payload_for(repo_ref, digest):
    # cosign's Go encoder: struct field order, no spaces, "optional": null.
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": repo_ref},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def load_private(path, password=None):
    pem = open(path, "rb").read()
    if b"ENCRYPTED SIGSTORE PRIVATE KEY" in pem:
        return decrypt_key(pem, password.encode())
    return serialization.load_pem_private_key(pem, None)


def decrypt_key(pem, password):
    lines = pem.decode().strip().splitlines()
    body = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert body["kdf"]["name"] == "scrypt" and body["cipher"]["name"] == "nacl/secretbox"
    p = body["kdf"]["params"]
    key = hashlib.scrypt(
        password, salt=base64.b64decode(body["kdf"]["salt"]), n=p["N"], r=p["r"], p=p["p"], maxmem=128 * 1024 * 1024, dklen=32
    )
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(body["ciphertext"]), base64.b64decode(body["cipher"]["nonce"]))
    return serialization.load_der_private_key(der, None)


def encrypt_key(priv, password):
    der = priv.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    key = hashlib.scrypt(password, salt=salt, n=32768, r=8, p=1, maxmem=128 * 1024 * 1024, dklen=32)
    ct = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    body = json.dumps(
        {
            "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
            "ciphertext": b64(ct),
        },
        separators=(",", ":"),
    ).encode()
    enc = b64(body)
    out = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    out += "".join(enc[i : i + 64] + "\n" for i in range(0, len(enc), 64))
    return out + "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"


def pub_pem(priv):
    return priv.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def sign(key_path, registry, repo, digest, edit=False):
    reg = base_url(registry)
    priv = load_private(key_path, os.environ.get("COSIGN_PASSWORD", ""))
    payload = payload_for(f"{registry.split('/')[0]}/{repo}", digest)
    sig = priv.sign(payload, ec.ECDSA(hashes.SHA256()))
    if edit:
        # Tamper: the stored payload differs from the signed bytes (digest claim unchanged).
        payload = payload.replace(b'"optional":null', b'"optional":{"x":"y"}')
    layer_digest = put_blob(reg, repo, payload)
    config = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_digest]}}).encode()
    config_digest = put_blob(reg, repo, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": SIMPLE, "digest": layer_digest, "size": len(payload), "annotations": {SIG_ANN: b64(sig)}}],
        }
    ).encode()
    put_manifest(reg, repo, "sha256-" + digest.split(":")[1] + ".sig", manifest, OCI_MANIFEST)


def sign_bundle(key_path, registry, repo, digest):
    reg = base_url(registry)
    priv = load_private(key_path, os.environ.get("COSIGN_PASSWORD", ""))
    subject = get_manifest(reg, repo, digest)
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f"{registry.split('/')[0]}/{repo}", "digest": {"sha256": digest.split(":")[1]}}],
            "predicateType": "https://sigstore.dev/cosign/sign/v1",
            "predicate": {},
        }
    ).encode()
    ptype = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(statement), statement)
    sig = priv.sign(pae, ec.ECDSA(hashes.SHA256()))
    bundle = json.dumps(
        {
            "mediaType": BUNDLE,
            "verificationMaterial": {"publicKey": {"hint": ""}},
            "dsseEnvelope": {"payload": b64(statement), "payloadType": ptype, "signatures": [{"sig": b64(sig), "keyid": ""}]},
        }
    ).encode()
    bundle_digest = put_blob(reg, repo, bundle)
    empty_digest = put_blob(reg, repo, b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE,
            "config": {"mediaType": EMPTY, "digest": empty_digest, "size": 2},
            "layers": [{"mediaType": BUNDLE, "digest": bundle_digest, "size": len(bundle)}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(subject)},
            "annotations": {"dev.sigstore.bundle.content": "dsse-envelope"},
        }
    ).encode()
    mdigest = digest_of(manifest)
    put_manifest(reg, repo, mdigest, manifest, OCI_MANIFEST)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": mdigest, "size": len(manifest), "artifactType": BUNDLE}],
        }
    ).encode()
    put_manifest(reg, repo, "sha256-" + digest.split(":")[1], index, OCI_INDEX)


def verify(pub_path, registry, repo, digest):
    reg = base_url(registry)
    pub = serialization.load_pem_public_key(open(pub_path, "rb").read())
    body = get_manifest(reg, repo, "sha256-" + digest.split(":")[1] + ".sig")
    if body is None:
        print("no signatures")
        return 1
    for layer in json.loads(body)["layers"]:
        if layer["mediaType"] != SIMPLE:
            continue
        payload = requests.get(f"{reg}/v2/{repo}/blobs/{layer['digest']}").content
        if digest_of(payload) != layer["digest"]:
            continue
        try:
            pub.verify(base64.b64decode(layer["annotations"][SIG_ANN]), payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        crit = json.loads(payload)["critical"]
        if crit["type"] == "cosign container image signature" and crit["image"]["docker-manifest-digest"] == digest:
            print("verified")
            return 0
    print("no valid signature")
    return 1


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "keygen":
        priv = ec.generate_private_key(ec.SECP256R1())
        pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        open(os.path.join(argv[2], "peer.key"), "wb").write(pem)
        open(os.path.join(argv[2], "peer.pub"), "w").write(pub_pem(priv))
        return 0
    if cmd == "encrypt-key":
        priv = serialization.load_pem_private_key(open(argv[2], "rb").read(), None)
        open(argv[3], "w").write(encrypt_key(priv, argv[4].encode()))
        return 0
    if cmd == "decrypt-key":
        print(pub_pem(decrypt_key(open(argv[2], "rb").read(), argv[3].encode())), end="")
        return 0
    if cmd == "sign":
        sign(argv[2], argv[3], argv[4], argv[5], edit="--payload-edit" in argv)
        return 0
    if cmd == "sign-bundle":
        sign_bundle(argv[2], argv[3], argv[4], argv[5])
        return 0
    if cmd == "verify":
        return verify(argv[2], argv[3], argv[4], argv[5])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
