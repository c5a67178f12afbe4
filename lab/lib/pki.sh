# The lab's PKI (sourced by lab/lab.sh, not run): a CA (EC P-256) in
# $LABDIR/pki, the certificates it signs for the API server, the admin, the
# controller manager, the scheduler, kube-proxy, each node (client and
# serving) and a fault proxy, and the kubeconfigs that carry them.  Each
# certificate is made once; a later `up` finds it and leaves it alone.
# shellcheck shell=bash


# pki_cert NAME SUBJECT EXTENSIONS: an EC key and a certificate signed by the lab CA.
pki_cert() {
	local d=$PKI
	[ -f "$d/$1.crt" ] && return 0
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-subj "$2" -keyout "$d/$1.key" -out "$d/$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$d/$1.ext"
	openssl x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 365 -extfile "$d/$1.ext" -out "$d/$1.crt" 2>/dev/null
	rm -f "$d/$1.csr"
}

ensure_pki() {
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	if [ ! -f "$PKI/ca.crt" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
			-subj "/CN=kubefence-lab-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
	fi
	pki_cert apiserver "/CN=kube-apiserver" \
		"subjectAltName=IP:$LAB_HOST_IP,IP:$LAB_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
	pki_cert admin "/O=system:masters/CN=kubefence-lab-admin" "extendedKeyUsage=clientAuth"
	pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" \
		"extendedKeyUsage=clientAuth"
	pki_cert controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
	pki_cert scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
	# kube-proxy: the user the default binding system:node-proxier names.
	pki_cert kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
	if [ ! -f "$PKI/sa.key" ]; then
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	fi
	write_kubeconfig "$LABDIR/admin.kubeconfig" admin "$PKI/admin.crt" "$PKI/admin.key"
	write_kubeconfig "$LABDIR/controller-manager.kubeconfig" controller-manager \
		"$PKI/controller-manager.crt" "$PKI/controller-manager.key"
	write_kubeconfig "$LABDIR/scheduler.kubeconfig" scheduler "$PKI/scheduler.crt" "$PKI/scheduler.key"
	write_kubeconfig "$LABDIR/kube-proxy.kubeconfig" kube-proxy "$PKI/kube-proxy.crt" "$PKI/kube-proxy.key"
}

write_kubeconfig() { # FILE USER CERT KEY
	cat >"$1" <<-EOF
		apiVersion: v1
		kind: Config
		clusters:
		- name: kubefence-lab
		  cluster:
		    server: https://$LAB_HOST_IP:$LAB_API_PORT
		    certificate-authority: $PKI/ca.crt
		users:
		- name: $2
		  user:
		    client-certificate: $3
		    client-key: $4
		contexts:
		- name: kubefence-lab
		  context:
		    cluster: kubefence-lab
		    user: $2
		current-context: kubefence-lab
	EOF
}

# cmd_proxy_cert: a serving certificate for a fault proxy standing in for
# the API server (the bridge and Service addresses); prints "CERT KEY CA".
cmd_proxy_cert() {
	need_root
	need_lab
	pki_cert faultproxy "/CN=kubefence-lab-faultproxy" \
		"subjectAltName=IP:$LAB_HOST_IP,IP:$LAB_SERVICE_IP,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth"
	echo "$PKI/faultproxy.crt $PKI/faultproxy.key $PKI/ca.crt"
}
