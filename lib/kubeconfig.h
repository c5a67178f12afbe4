/* kubeconfig: where the API server is and how to prove who we are.
 *
 * Turns either a kubeconfig file (clusters, users, contexts) or the in-cluster
 * service-account directory plus the KUBERNETES_SERVICE_HOST/PORT environment
 * into one flat, immutable `struct kubeconfig`: server URL, trust anchor, and
 * credentials.  Nothing here talks to the network; k8s.c consumes the result.
 * TLS is always verified, so a configuration asking for
 * `insecure-skip-tls-verify: true` or a plain-http server is refused, as are
 * credential plugins (exec, auth-provider) that this client does not run. */
#pragma once

#include <stddef.h>

/* The default directory of a pod's service-account credentials. */
#define KUBECONFIG_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* A loaded client configuration.  All strings and blobs are owned by the
 * struct; unset members are NULL (and their lengths 0).  Paths are absolute
 * or relative to the process's working directory: paths that were relative in
 * a kubeconfig file have already been resolved against that file's
 * directory. */
struct kubeconfig {
	char *source;    /* the kubeconfig path, or "in-cluster", for messages */
	char *context;   /* the context used; NULL for in-cluster */
	char *server;    /* "https://host:port[/prefix]", no trailing slash */
	char *namespace; /* the context's or the service account's namespace */

	/* Trust anchor: a PEM file, PEM bytes, or neither (system store). */
	char *ca_file;
	char *ca_data;
	size_t ca_data_len;

	/* Bearer token: a fixed string, or a file re-read when it changes
	 * (token_file wins when both are set). */
	char *token;
	char *token_file;

	/* Client certificate and key: PEM files or PEM bytes. */
	char *cert_file;
	char *cert_data;
	size_t cert_data_len;
	char *key_file;
	char *key_data;
	size_t key_data_len;
};

/* Load `path`, using `context` or, when NULL, the file's current-context.
 * Returns 0 and stores a new config in *ret_kc (caller frees with
 * kubeconfig_free()), or a negative errno with the reason in err:
 *   -ENOENT  the file, or a token, CA, certificate or key file it names,
 *            does not exist,
 *   -EINVAL  YAML syntax error (with the line), unknown context, a context
 *            naming a missing cluster or user, no server, a non-https server,
 *            insecure-skip-tls-verify, bad base64,
 *   -EOPNOTSUPP  exec / auth-provider / basic-auth credentials,
 *   other -errno from reading files.
 * Does not log.  Blocks only on local file I/O. */
int kubeconfig_load(const char *path, const char *context, struct kubeconfig **ret_kc, char *err,
                    size_t errlen);

/* Build the in-cluster config from `sa_dir` (NULL = KUBECONFIG_SA_DIR):
 * `token` (read now, to fail early, and re-read later by k8s.c when it
 * changes), `ca.crt`, the optional `namespace` file, and the server from
 * KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (an IPv6 host is
 * bracketed).  Returns 0 and a new config in *ret_kc, -ENXIO when the
 * environment variables are missing (not in a pod), -ENOENT when the token
 * or CA file is missing, or another -errno; detail in err.  Does not log. */
int kubeconfig_load_in_cluster(const char *sa_dir, struct kubeconfig **ret_kc, char *err,
                               size_t errlen);

/* Free a config; accepts NULL and half-built configs; returns NULL. */
struct kubeconfig *kubeconfig_free(struct kubeconfig *kc);

/* Read a bearer token file: at most 64 KiB, surrounding whitespace trimmed.
 * Returns 0 and a malloc'd string in *ret_token, -ENODATA for an empty file,
 * -EFBIG for a larger one, or the -errno of open/read.  Does not log. */
int kubeconfig_read_token_file(const char *path, char **ret_token);
