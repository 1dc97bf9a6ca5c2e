#!/bin/sh
# Regenerates the simulated ("custom root") test hierarchy used by certs/tests:
# an RSA ARK and ASK in AMD's format (RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48), a P-384 VCEK
# with AMD extensions, and CRLs signed by the ARK. Needs OpenSSL 3.
# Validity: 2025-01-01 .. 2035-01-01; CRL thisUpdate = generation time (2026-11-23 for the
# committed files), nextUpdate +3650 days. VCEK hwID = 64 x 0x5a, TCB bl 3 tee 0 snp 8 ucode 217.
set -eu
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PSS="-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384"
DN="/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Advanced Micro Devices"

cat > "$work/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
dir = $work
database = $work/index.txt
new_certs_dir = $work
serial = $work/serial
crlnumber = $work/crlnumber
default_md = sha384
policy = any
unique_subject = no
copy_extensions = none
default_crl_days = 3650
[any]
commonName = supplied
organizationalUnitName = optional
countryName = optional
localityName = optional
stateOrProvinceName = optional
organizationName = optional
[ark_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
[ask_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign
[vcek_ext]
1.3.6.1.4.1.3704.1.1 = DER:02:01:00
1.3.6.1.4.1.3704.1.2 = ASN1:IA5STRING:Milan-B0
1.3.6.1.4.1.3704.1.3.1 = DER:02:01:03
1.3.6.1.4.1.3704.1.3.2 = DER:02:01:00
1.3.6.1.4.1.3704.1.3.3 = DER:02:01:08
1.3.6.1.4.1.3704.1.3.8 = DER:02:02:00:d9
1.3.6.1.4.1.3704.1.4 = DER:$(printf '5a%.0s' $(seq 64) | sed 's/../&:/g; s/:$//')
CNF
: > "$work/index.txt"
echo 1000 > "$work/serial"
echo 01 > "$work/crlnumber"
CA="openssl ca -batch -config $work/ca.cnf -notext -md sha384 $PSS -startdate 20250101000000Z -enddate 20350101000000Z"

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/ark.key" 2>/dev/null
openssl req -new -key "$work/ark.key" -subj "$DN/CN=ARK-Milan" -out "$work/ark.csr"
$CA -selfsign -keyfile "$work/ark.key" -in "$work/ark.csr" -extensions ark_ext -out "$work/ark.pem" 2>/dev/null

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/ask.key" 2>/dev/null
openssl req -new -key "$work/ask.key" -subj "$DN/CN=SEV-Milan" -out "$work/ask.csr"
$CA -cert "$work/ark.pem" -keyfile "$work/ark.key" -in "$work/ask.csr" -extensions ask_ext -out "$work/ask.pem" 2>/dev/null

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$work/vcek.key" 2>/dev/null
openssl req -new -key "$work/vcek.key" -subj "$DN/CN=SEV-VCEK" -out "$work/vcek.csr"
$CA -cert "$work/ask.pem" -keyfile "$work/ask.key" -in "$work/vcek.csr" -extensions vcek_ext -out "$work/vcek.pem" 2>/dev/null

# Wrong key types for a VCEK: RSA and P-256 (same extensions), for parser negatives.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/vcek-rsa.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/vcek-p256.key" 2>/dev/null
for kind in rsa p256; do
  openssl req -new -key "$work/vcek-$kind.key" -subj "$DN/CN=SEV-VCEK" -out "$work/vcek-$kind.csr"
  $CA -cert "$work/ask.pem" -keyfile "$work/ask.key" -in "$work/vcek-$kind.csr" -extensions vcek_ext -out "$work/vcek-$kind.pem" 2>/dev/null
done

for name in ark ask vcek vcek-rsa vcek-p256; do openssl x509 -in "$work/$name.pem" -outform DER -out "sim-$name.der"; done

GENCRL="openssl ca -batch -config $work/ca.cnf -gencrl -cert $work/ark.pem -keyfile $work/ark.key -md sha384"
# Nothing revoked yet (the index only lists the ASK, issued by the ARK, as valid).
$GENCRL $PSS -out "$work/empty.pem" 2>/dev/null
openssl crl -in "$work/empty.pem" -outform DER -out sim-crl-empty.der
# Signed with PKCS#1 v1.5 instead of PSS: must be rejected by algorithm.
$GENCRL -out "$work/pkcs1.pem" 2>/dev/null
openssl crl -in "$work/pkcs1.pem" -outform DER -out sim-crl-pkcs1.der
# Revoke the ASK (serial 0x1001).
openssl ca -config "$work/ca.cnf" -cert "$work/ark.pem" -keyfile "$work/ark.key" -revoke "$work/ask.pem" 2>/dev/null
$GENCRL $PSS -out "$work/revoked.pem" 2>/dev/null
openssl crl -in "$work/revoked.pem" -outform DER -out sim-crl-ask-revoked.der
