#!/usr/bin/env bash
# mkcert.sh DIR: a throw-away CA and a server certificate for the stand-in provider.
#   DIR/ca.pem DIR/ca.key         self-signed CA (EC P-256), valid 2 days
#   DIR/server.pem DIR/server.key server cert, CN=localhost, SAN DNS:localhost, IP:127.0.0.1,
#                                 signed by the CA, valid 2 days
# Quiet on success; on failure prints openssl's complaint and exits non-zero.
set -euo pipefail
if [ $# -ne 1 ]; then echo "usage: mkcert.sh DIR" >&2; exit 2; fi
dir=$1
mkdir -p "$dir"
umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/llmcap-mkcert.XXXXXX")
trap 'rm -rf "$work"' EXIT
log=$work/openssl.log
run() { "$@" >>"$log" 2>&1 || { echo "mkcert.sh: failed: $*" >&2; cat "$log" >&2; exit 1; }; }

cat >"$work/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = llmcap test CA
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
cat >"$work/server.ext" <<'CNF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key"
run openssl req -new -x509 -config "$work/ca.cnf" -key "$work/ca.key" -days 2 -sha256 \
	-set_serial "0x$(openssl rand -hex 8)" -out "$work/ca.pem"
run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/server.key"
run openssl req -new -key "$work/server.key" -subj "/CN=localhost" -out "$work/server.csr"
run openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
	-set_serial "0x$(openssl rand -hex 8)" -days 2 -sha256 -extfile "$work/server.ext" \
	-out "$work/server.pem"
run openssl verify -CAfile "$work/ca.pem" "$work/server.pem"

install -m 0644 "$work/ca.pem" "$dir/ca.pem"
install -m 0600 "$work/ca.key" "$dir/ca.key"
install -m 0644 "$work/server.pem" "$dir/server.pem"
install -m 0600 "$work/server.key" "$dir/server.key"
