#!/usr/bin/env bash
# Make a server certificate for kf-faultproxy, signed by the test CA of a
# control plane started by tests/harness/control-plane.sh, so clients that
# trust that CA (every kubeconfig the harness wrote) trust the proxy too.
#
#   mkcert.sh DIR [OUT]   DIR/pki/ca.{crt,key} sign OUT/proxy.{crt,key}
#                         (OUT defaults to DIR/pki); valid 30 days for
#                         127.0.0.1, ::1 and localhost.
set -euo pipefail

[ $# -ge 1 ] && [ $# -le 2 ] || {
	echo "usage: $0 DIR [OUT]" >&2
	exit 2
}
pki=$1/pki
out=${2:-$pki}
[ -f "$pki/ca.crt" ] && [ -f "$pki/ca.key" ] || {
	echo "mkcert: no $pki/ca.crt and ca.key" >&2
	exit 1
}
mkdir -p "$out"
cat >"$out/proxy.ext" <<-EOT
	subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
	extendedKeyUsage=serverAuth
EOT
openssl req -newkey rsa:2048 -nodes -subj "/CN=kf-faultproxy" \
	-keyout "$out/proxy.key" -out "$out/proxy.csr" 2>/dev/null
openssl x509 -req -in "$out/proxy.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
	-CAcreateserial -days 30 -extfile "$out/proxy.ext" -out "$out/proxy.crt" 2>/dev/null
rm -f "$out/proxy.csr" "$out/proxy.ext"
echo "$out/proxy.crt"
