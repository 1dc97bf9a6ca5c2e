"""Computes golden-v1.txt independently of the Rust code, with pyca/cryptography's AESGCM."""
import struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

key = bytes(range(32))
nonce = bytes(range(0xA0, 0xAC))
root_key = 1  # VMRK
field_select = 0x09  # POLICY | MEASUREMENT
guest_svn = 3
tcb_version = 0x1122334455667788
plaintext = b"A3S Box sealing golden vector v1"

header = (b"A3SSEAL" + bytes([1, root_key]) + struct.pack("<QIQ", field_select, guest_svn, tcb_version)
          + nonce)
assert len(header) == 0x29
envelope = header + AESGCM(key).encrypt(nonce, plaintext, header)  # ciphertext || tag, AAD = header

for name, value in [
    ("key", key.hex()), ("nonce", nonce.hex()), ("root_key", root_key),
    ("field_select", hex(field_select)), ("guest_svn", guest_svn), ("tcb_version", hex(tcb_version)),
    ("plaintext", plaintext.hex()), ("envelope", envelope.hex()),
]:
    print(f"{name}={value}")
