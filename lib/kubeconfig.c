/* kubeconfig: loading client configuration (see kubeconfig.h).
 *
 * A kubeconfig is YAML (JSON being a subset of it).  libyaml's event stream is
 * first turned into a small tree of scalars, mappings and sequences that
 * remembers line numbers, so that every complaint can say `file:line:`; the
 * tree is then walked for the one context in use.  Only the keys this client
 * honours are read; credential mechanisms it cannot honour are refused by
 * name rather than silently ignored, because falling back to anonymous access
 * would turn a configuration mistake into confusing 401/403 errors later. */
#include "config.h"

#include "lib/kubeconfig.h"

#include "lib/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* A kubeconfig bigger than this is not a kubeconfig. */
#define KUBECONFIG_MAX_SIZE (4u * 1024 * 1024)
#define TOKEN_MAX_SIZE      (64u * 1024)
/* Deeper nesting than this is hostile input, not configuration. */
#define YAML_MAX_DEPTH 64

enum ynode_type {
	YNODE_SCALAR,
	YNODE_MAPPING,
	YNODE_SEQUENCE,
};

struct ynode {
	enum ynode_type type;
	size_t line;          /* 1-based, for messages */
	char *value;          /* scalars only */
	bool plain;           /* unquoted scalar: "", "~" and "null" then mean null */
	struct ynode **items; /* mapping: key, value, key, value...; sequence: items */
	size_t n;
};

struct yctx {
	yaml_parser_t parser;
	const char *path;
	char *err;
	size_t errlen;
};

static struct ynode *ynode_free(struct ynode *n)
{
	if (!n)
		return NULL;
	for (size_t i = 0; i < n->n; i++)
		ynode_free(n->items[i]);
	free(n->items);
	free(n->value);
	return mfree(n);
}

static int ynode_append(struct ynode *parent, struct ynode *child)
{
	struct ynode **items;

	items = realloc(parent->items, (parent->n + 1) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	parent->items = items;
	parent->items[parent->n++] = child;
	return 0;
}

static int ynext(struct yctx *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev)) {
		char ctx[128] = "";

		/* For an unterminated construct the problem is found at its end;
		 * where it began is what the reader needs too. */
		if (y->parser.context)
			snprintf(ctx, sizeof(ctx), " (%s at line %zu)", y->parser.context,
			         (size_t)y->parser.context_mark.line + 1);
		errbuf_set(y->err, y->errlen, "%s:%zu:%zu: YAML syntax error: %s%s", y->path,
		           (size_t)y->parser.problem_mark.line + 1,
		           (size_t)y->parser.problem_mark.column + 1,
		           y->parser.problem ? y->parser.problem : "unknown problem", ctx);
		return -EINVAL;
	}
	return 0;
}

/* Build the node that starts with `ev`; consumes (deletes) `ev`. */
static int yread_node(struct yctx *y, yaml_event_t *ev, unsigned depth, struct ynode **ret)
{
	struct ynode *n = NULL;
	yaml_event_type_t end;
	int r = 0;

	n = calloc(1, sizeof(*n));
	if (!n) {
		r = -ENOMEM;
		goto out;
	}
	n->line = (size_t)ev->start_mark.line + 1;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		n->type = YNODE_SCALAR;
		n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
		if (!n->value) {
			r = -ENOMEM;
			goto out;
		}
		n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		break;
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		if (ev->type == YAML_MAPPING_START_EVENT) {
			n->type = YNODE_MAPPING;
			end = YAML_MAPPING_END_EVENT;
		} else {
			n->type = YNODE_SEQUENCE;
			end = YAML_SEQUENCE_END_EVENT;
		}
		if (depth >= YAML_MAX_DEPTH) {
			errbuf_set(y->err, y->errlen, "%s:%zu: nesting deeper than %d levels",
			           y->path, n->line, YAML_MAX_DEPTH);
			r = -EINVAL;
			goto out;
		}
		for (;;) {
			yaml_event_t child_ev;
			struct ynode *child = NULL;

			r = ynext(y, &child_ev);
			if (r < 0)
				goto out;
			if (child_ev.type == end) {
				yaml_event_delete(&child_ev);
				break;
			}
			r = yread_node(y, &child_ev, depth + 1, &child);
			if (r < 0)
				goto out;
			r = ynode_append(n, child);
			if (r < 0) {
				ynode_free(child);
				goto out;
			}
		}
		break;
	case YAML_ALIAS_EVENT:
		errbuf_set(y->err, y->errlen, "%s:%zu: YAML aliases are not supported", y->path,
		           n->line);
		r = -EINVAL;
		goto out;
	default:
		errbuf_set(y->err, y->errlen, "%s:%zu: unexpected YAML structure", y->path,
		           n->line);
		r = -EINVAL;
		goto out;
	}

	*ret = n;
	n = NULL;
out:
	yaml_event_delete(ev);
	ynode_free(n);
	return r;
}

/* Parse a whole single-document YAML text into a tree. */
static int yparse(const char *path, const char *text, size_t len, struct ynode **ret, char *err,
                  size_t errlen)
{
	struct yctx y = {.path = path, .err = err, .errlen = errlen};
	struct ynode *root = NULL;
	yaml_event_t ev;
	bool parser_ok = false;
	int r;

	if (!yaml_parser_initialize(&y.parser)) {
		r = -ENOMEM;
		goto out;
	}
	parser_ok = true;
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)text, len);

	/* STREAM-START, then DOCUMENT-START or an empty stream. */
	r = ynext(&y, &ev);
	if (r < 0)
		goto out;
	yaml_event_delete(&ev);
	r = ynext(&y, &ev);
	if (r < 0)
		goto out;
	if (ev.type != YAML_DOCUMENT_START_EVENT) {
		yaml_event_delete(&ev);
		errbuf_set(err, errlen, "%s: empty file", path);
		r = -EINVAL;
		goto out;
	}
	yaml_event_delete(&ev);
	r = ynext(&y, &ev);
	if (r < 0)
		goto out;
	r = yread_node(&y, &ev, 0, &root);
	if (r < 0)
		goto out;
	/* DOCUMENT-END; reading on also surfaces syntax errors after the node. */
	r = ynext(&y, &ev);
	if (r < 0)
		goto out;
	yaml_event_delete(&ev);
	r = ynext(&y, &ev);
	if (r < 0)
		goto out;
	if (ev.type != YAML_STREAM_END_EVENT) {
		errbuf_set(err, errlen, "%s:%zu: more than one YAML document", path,
		           (size_t)ev.start_mark.line + 1);
		yaml_event_delete(&ev);
		r = -EINVAL;
		goto out;
	}
	yaml_event_delete(&ev);

	*ret = root;
	root = NULL;
	r = 0;
out:
	ynode_free(root);
	if (parser_ok)
		yaml_parser_delete(&y.parser);
	return r;
}

static bool ynode_is_null(const struct ynode *n)
{
	return !n || (n->type == YNODE_SCALAR && n->plain &&
	              (n->value[0] == '\0' || strcmp(n->value, "~") == 0 ||
	               strcmp(n->value, "null") == 0 || strcmp(n->value, "Null") == 0 ||
	               strcmp(n->value, "NULL") == 0));
}

/* The value under `key` in mapping `map`, or NULL. */
static const struct ynode *ymap_get(const struct ynode *map, const char *key)
{
	if (!map || map->type != YNODE_MAPPING)
		return NULL;
	for (size_t i = 0; i + 1 < map->n; i += 2)
		if (map->items[i]->type == YNODE_SCALAR && strcmp(map->items[i]->value, key) == 0)
			return ynode_is_null(map->items[i + 1]) ? NULL : map->items[i + 1];
	return NULL;
}

/* A string under `key`: 0 and *ret (NULL when absent), or -EINVAL when it is
 * a mapping or sequence. */
static int ymap_str(const char *path, const struct ynode *map, const char *key, const char **ret,
                    char *err, size_t errlen)
{
	const struct ynode *v = ymap_get(map, key);

	if (v && v->type != YNODE_SCALAR) {
		errbuf_set(err, errlen, "%s:%zu: '%s' must be a string", path, v->line, key);
		return -EINVAL;
	}
	*ret = v ? v->value : NULL;
	return 0;
}

/* In the sequence under `list_key` of the root, the entry whose `name` is
 * `name`; returns its `inner_key` mapping via *ret (NULL if that is empty). */
static int ynamed_get(const char *path, const struct ynode *root, const char *list_key,
                      const char *inner_key, const char *name, const struct ynode **ret, char *err,
                      size_t errlen)
{
	const struct ynode *list = ymap_get(root, list_key);

	if (list && list->type != YNODE_SEQUENCE) {
		errbuf_set(err, errlen, "%s:%zu: '%s' must be a list", path, list->line, list_key);
		return -EINVAL;
	}
	for (size_t i = 0; list && i < list->n; i++) {
		const struct ynode *entry = list->items[i], *n = ymap_get(entry, "name"), *inner;

		if (!n || n->type != YNODE_SCALAR || strcmp(n->value, name) != 0)
			continue;
		inner = ymap_get(entry, inner_key);
		if (inner && inner->type != YNODE_MAPPING) {
			errbuf_set(err, errlen, "%s:%zu: '%s' of '%s' must be a mapping", path,
			           inner->line, inner_key, name);
			return -EINVAL;
		}
		*ret = inner;
		return 0;
	}
	return -ENOENT;
}

static int read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd = -1, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	/* Read up to max+1 so that a file grown since fstat() is still caught. */
	buf = malloc(max + 2);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, max + 1 - len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			r = -EFBIG;
			goto out;
		}
	}
	buf[len] = '\0';
	*ret = buf;
	buf = NULL;
	if (ret_len)
		*ret_len = len;
	r = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}

int kubeconfig_read_token_file(const char *path, char **ret_token)
{
	char *buf = NULL, *start, *end;
	size_t len;
	int r;

	r = read_file_bounded(path, TOKEN_MAX_SIZE, &buf, &len);
	if (r < 0)
		goto out;
	start = buf;
	while (*start && isspace((unsigned char)*start))
		start++;
	end = start + strlen(start);
	while (end > start && isspace((unsigned char)end[-1]))
		end--;
	*end = '\0';
	if (start == end) {
		r = -ENODATA;
		goto out;
	}
	memmove(buf, start, (size_t)(end - start) + 1);
	*ret_token = buf;
	buf = NULL;
	r = 0;
out:
	free(buf);
	return r;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decode standard base64 (whitespace ignored, padding optional) into a
 * NUL-terminated buffer, since PEM is text. */
static int base64_decode(const char *in, char **ret, size_t *ret_len)
{
	size_t inlen = strlen(in), len = 0;
	unsigned acc = 0, bits = 0;
	bool pad = false;
	char *out;

	out = malloc(inlen / 4 * 3 + 4);
	if (!out)
		return -ENOMEM;
	for (const char *p = in; *p; p++) {
		unsigned char c = (unsigned char)*p;
		int v;

		if (isspace(c))
			continue;
		if (c == '=') {
			pad = true;
			continue;
		}
		v = b64_value(c);
		if (v < 0 || pad) {
			free(out);
			return -EINVAL;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[len++] = (char)((acc >> bits) & 0xff);
		}
	}
	/* 6 leftover bits cannot come from whole bytes. */
	if (bits >= 6 || len == 0) {
		free(out);
		return -EINVAL;
	}
	out[len] = '\0';
	*ret = out;
	*ret_len = len;
	return 0;
}

/* Resolve `p` against the kubeconfig's directory `dir` ("" = cwd). */
static int resolve_path(const char *dir, const char *p, char **ret)
{
	char *s;

	if (p[0] == '/' || dir[0] == '\0')
		s = strdup(p);
	else if (asprintf(&s, "%s/%s", dir, p) < 0)
		s = NULL;
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

/* Fail at load, naming the key, rather than with a TLS error later. */
static int check_readable(const char *kcpath, const char *what, const char *name, const char *key,
                          const char *file, char *err, size_t errlen)
{
	int r;

	if (access(file, R_OK) >= 0)
		return 0;
	r = -errno;
	errbuf_set(err, errlen, "%s: %s '%s': %s '%s': %s", kcpath, what, name, key, file,
	           strerror(-r));
	return r;
}

static bool is_falsy(const char *v)
{
	static const char *const falsy[] = {"false", "False", "FALSE", "no", "No", "NO",
	                                    "off",   "Off",   "OFF",   "n",  "N"};

	for (size_t i = 0; i < ELEMENTSOF(falsy); i++)
		if (strcmp(v, falsy[i]) == 0)
			return true;
	return false;
}

static int load_cluster(const char *path, const char *dir, const struct ynode *cluster,
                        const char *name, struct kubeconfig *kc, char *err, size_t errlen)
{
	const char *server, *ca, *ca_data, *insecure;
	size_t len;
	int r;

	if ((r = ymap_str(path, cluster, "server", &server, err, errlen)) < 0 ||
	    (r = ymap_str(path, cluster, "certificate-authority", &ca, err, errlen)) < 0 ||
	    (r = ymap_str(path, cluster, "certificate-authority-data", &ca_data, err, errlen)) <
	            0 ||
	    (r = ymap_str(path, cluster, "insecure-skip-tls-verify", &insecure, err, errlen)) < 0)
		return r;

	if (insecure && !is_falsy(insecure)) {
		errbuf_set(err, errlen,
		           "%s:%zu: cluster '%s': insecure-skip-tls-verify is not supported: "
		           "kubefence always verifies the API server's certificate; "
		           "set certificate-authority(-data) instead",
		           path, ymap_get(cluster, "insecure-skip-tls-verify")->line, name);
		return -EINVAL;
	}
	if (!server || !server[0]) {
		errbuf_set(err, errlen, "%s: cluster '%s' has no server", path, name);
		return -EINVAL;
	}
	if (strncmp(server, "https://", 8) != 0 || !server[8]) {
		errbuf_set(err, errlen,
		           "%s:%zu: cluster '%s': server '%s' is not an https:// URL; "
		           "kubefence only talks TLS to the API server",
		           path, ymap_get(cluster, "server")->line, name, server);
		return -EINVAL;
	}
	kc->server = strdup(server);
	if (!kc->server)
		return -ENOMEM;
	len = strlen(kc->server);
	while (len > 8 && kc->server[len - 1] == '/')
		kc->server[--len] = '\0';

	if (ca_data) {
		r = base64_decode(ca_data, &kc->ca_data, &kc->ca_data_len);
		if (r < 0) {
			errbuf_set(err, errlen,
			           "%s:%zu: cluster '%s': certificate-authority-data is not valid "
			           "base64",
			           path, ymap_get(cluster, "certificate-authority-data")->line,
			           name);
			return r;
		}
	} else if (ca) {
		r = resolve_path(dir, ca, &kc->ca_file);
		if (r < 0)
			return r;
		r = check_readable(path, "cluster", name, "certificate-authority", kc->ca_file, err,
		                   errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

static int load_user(const char *path, const char *dir, const struct ynode *user, const char *name,
                     struct kubeconfig *kc, char *err, size_t errlen)
{
	static const char *const unsupported[] = {"exec", "auth-provider", "username", "password"};
	const char *token, *token_file, *cert, *cert_data, *key, *key_data;
	int r;

	for (size_t i = 0; i < ELEMENTSOF(unsupported); i++) {
		const struct ynode *v = ymap_get(user, unsupported[i]);

		if (v) {
			errbuf_set(err, errlen,
			           "%s:%zu: user '%s': %s credentials are not supported; use a "
			           "token, tokenFile or client certificate",
			           path, v->line, name,
			           i < 2 ? unsupported[i] : "basic-auth (username/password)");
			return -EOPNOTSUPP;
		}
	}
	if ((r = ymap_str(path, user, "token", &token, err, errlen)) < 0 ||
	    (r = ymap_str(path, user, "tokenFile", &token_file, err, errlen)) < 0 ||
	    (r = ymap_str(path, user, "client-certificate", &cert, err, errlen)) < 0 ||
	    (r = ymap_str(path, user, "client-certificate-data", &cert_data, err, errlen)) < 0 ||
	    (r = ymap_str(path, user, "client-key", &key, err, errlen)) < 0 ||
	    (r = ymap_str(path, user, "client-key-data", &key_data, err, errlen)) < 0)
		return r;

	if (token_file) {
		char *t = NULL;

		r = resolve_path(dir, token_file, &kc->token_file);
		if (r < 0)
			return r;
		/* Fail now rather than at the first request. */
		r = kubeconfig_read_token_file(kc->token_file, &t);
		if (r < 0) {
			errbuf_set(err, errlen, "%s: user '%s': tokenFile '%s': %s", path, name,
			           kc->token_file, r == -ENODATA ? "file is empty" : strerror(-r));
			return r;
		}
		free(t);
	}
	if (token) {
		kc->token = strdup(token);
		if (!kc->token)
			return -ENOMEM;
	}

	if (cert_data) {
		r = base64_decode(cert_data, &kc->cert_data, &kc->cert_data_len);
		if (r < 0) {
			errbuf_set(err, errlen,
			           "%s: user '%s': client-certificate-data is not valid base64",
			           path, name);
			return r;
		}
	} else if (cert && (r = resolve_path(dir, cert, &kc->cert_file)) < 0)
		return r;
	if (key_data) {
		r = base64_decode(key_data, &kc->key_data, &kc->key_data_len);
		if (r < 0) {
			errbuf_set(err, errlen,
			           "%s: user '%s': client-key-data is not valid base64", path,
			           name);
			return r;
		}
	} else if (key && (r = resolve_path(dir, key, &kc->key_file)) < 0)
		return r;

	if (kc->cert_file && (r = check_readable(path, "user", name, "client-certificate",
	                                         kc->cert_file, err, errlen)) < 0)
		return r;
	if (kc->key_file &&
	    (r = check_readable(path, "user", name, "client-key", kc->key_file, err, errlen)) < 0)
		return r;
	if (!!(kc->cert_file || kc->cert_data) != !!(kc->key_file || kc->key_data)) {
		errbuf_set(err, errlen,
		           "%s: user '%s': a client certificate needs both certificate and key",
		           path, name);
		return -EINVAL;
	}
	return 0;
}

int kubeconfig_load(const char *path, const char *context, struct kubeconfig **ret_kc, char *err,
                    size_t errlen)
{
	struct kubeconfig *kc = NULL;
	struct ynode *root = NULL;
	const struct ynode *ctx = NULL, *cluster = NULL, *user = NULL;
	const char *cluster_name, *user_name, *ns;
	char *text = NULL, *dir = NULL, *slash;
	size_t len;
	int r;

	if (!path || !path[0]) {
		errbuf_set(err, errlen, "no kubeconfig path given");
		r = -EINVAL;
		goto out;
	}
	r = read_file_bounded(path, KUBECONFIG_MAX_SIZE, &text, &len);
	if (r < 0) {
		errbuf_set(err, errlen, "%s: cannot read kubeconfig: %s", path,
		           r == -EFBIG ? "file too large" : strerror(-r));
		goto out;
	}
	r = yparse(path, text, len, &root, err, errlen);
	if (r < 0)
		goto out;
	if (root->type != YNODE_MAPPING) {
		errbuf_set(err, errlen, "%s:%zu: a kubeconfig must be a mapping", path, root->line);
		r = -EINVAL;
		goto out;
	}

	dir = strdup(path);
	if (!dir) {
		r = -ENOMEM;
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash)
		slash[slash == dir ? 1 : 0] = '\0';
	else
		dir[0] = '\0';

	if (!context) {
		r = ymap_str(path, root, "current-context", &context, err, errlen);
		if (r < 0)
			goto out;
		if (!context || !context[0]) {
			errbuf_set(err, errlen, "%s: no current-context set and no context given",
			           path);
			r = -EINVAL;
			goto out;
		}
	}
	r = ynamed_get(path, root, "contexts", "context", context, &ctx, err, errlen);
	if (r == -ENOENT) {
		errbuf_set(err, errlen, "%s: context '%s' not found", path, context);
		r = -EINVAL;
	}
	if (r < 0)
		goto out;
	if ((r = ymap_str(path, ctx, "cluster", &cluster_name, err, errlen)) < 0 ||
	    (r = ymap_str(path, ctx, "user", &user_name, err, errlen)) < 0 ||
	    (r = ymap_str(path, ctx, "namespace", &ns, err, errlen)) < 0)
		goto out;
	if (!cluster_name || !cluster_name[0]) {
		errbuf_set(err, errlen, "%s: context '%s' names no cluster", path, context);
		r = -EINVAL;
		goto out;
	}
	r = ynamed_get(path, root, "clusters", "cluster", cluster_name, &cluster, err, errlen);
	if (r == -ENOENT) {
		errbuf_set(err, errlen, "%s: context '%s' names cluster '%s', which is not defined",
		           path, context, cluster_name);
		r = -EINVAL;
	}
	if (r < 0)
		goto out;
	/* A context without a user is anonymous access, which is legitimate. */
	if (user_name && user_name[0]) {
		r = ynamed_get(path, root, "users", "user", user_name, &user, err, errlen);
		if (r == -ENOENT) {
			errbuf_set(err, errlen,
			           "%s: context '%s' names user '%s', which is not defined", path,
			           context, user_name);
			r = -EINVAL;
		}
		if (r < 0)
			goto out;
	}

	kc = calloc(1, sizeof(*kc));
	if (!kc) {
		r = -ENOMEM;
		goto out;
	}
	kc->source = strdup(path);
	kc->context = strdup(context);
	if (!kc->source || !kc->context || (ns && !(kc->namespace = strdup(ns)))) {
		r = -ENOMEM;
		goto out;
	}
	r = load_cluster(path, dir, cluster, cluster_name, kc, err, errlen);
	if (r < 0)
		goto out;
	r = load_user(path, dir, user, user_name ? user_name : "", kc, err, errlen);
	if (r < 0)
		goto out;

	*ret_kc = kc;
	kc = NULL;
	r = 0;
out:
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "%s: out of memory", path ? path : "kubeconfig");
	kubeconfig_free(kc);
	ynode_free(root);
	free(text);
	free(dir);
	return r;
}

int kubeconfig_load_in_cluster(const char *sa_dir, struct kubeconfig **ret_kc, char *err,
                               size_t errlen)
{
	struct kubeconfig *kc = NULL;
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *ns_path = NULL, *token = NULL;
	int r;

	if (!sa_dir)
		sa_dir = KUBECONFIG_SA_DIR;
	if (!host || !host[0] || !port || !port[0]) {
		errbuf_set(err, errlen,
		           "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
		           "must be set (not running in a pod?)");
		r = -ENXIO;
		goto out;
	}
	if (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5) {
		errbuf_set(err, errlen, "in-cluster: KUBERNETES_SERVICE_PORT '%s' is not a port",
		           port);
		r = -EINVAL;
		goto out;
	}

	kc = calloc(1, sizeof(*kc));
	if (!kc) {
		r = -ENOMEM;
		goto out;
	}
	kc->source = strdup("in-cluster");
	if (!kc->source) {
		r = -ENOMEM;
		goto out;
	}
	/* An IPv6 literal needs brackets in a URL; one already bracketed does not. */
	if (asprintf(&kc->server,
	             strchr(host, ':') && host[0] != '[' ? "https://[%s]:%s" : "https://%s:%s",
	             host, port) < 0) {
		kc->server = NULL;
		r = -ENOMEM;
		goto out;
	}
	if (asprintf(&kc->token_file, "%s/token", sa_dir) < 0) {
		kc->token_file = NULL;
		r = -ENOMEM;
		goto out;
	}
	if (asprintf(&kc->ca_file, "%s/ca.crt", sa_dir) < 0) {
		kc->ca_file = NULL;
		r = -ENOMEM;
		goto out;
	}
	if (asprintf(&ns_path, "%s/namespace", sa_dir) < 0) {
		ns_path = NULL;
		r = -ENOMEM;
		goto out;
	}

	r = kubeconfig_read_token_file(kc->token_file, &token);
	if (r < 0) {
		errbuf_set(err, errlen, "in-cluster: token '%s': %s", kc->token_file,
		           r == -ENODATA ? "file is empty" : strerror(-r));
		goto out;
	}
	if (access(kc->ca_file, R_OK) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "in-cluster: CA '%s': %s", kc->ca_file, strerror(-r));
		goto out;
	}
	/* The namespace file is optional: callers may name namespaces themselves. */
	r = kubeconfig_read_token_file(ns_path, &kc->namespace);
	if (r < 0 && r != -ENOENT && r != -ENODATA) {
		errbuf_set(err, errlen, "in-cluster: namespace '%s': %s", ns_path, strerror(-r));
		goto out;
	}

	*ret_kc = kc;
	kc = NULL;
	r = 0;
out:
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "in-cluster: out of memory");
	kubeconfig_free(kc);
	free(ns_path);
	free(token);
	return r;
}

struct kubeconfig *kubeconfig_free(struct kubeconfig *kc)
{
	if (!kc)
		return NULL;
	free(kc->source);
	free(kc->context);
	free(kc->server);
	free(kc->namespace);
	free(kc->ca_file);
	free(kc->ca_data);
	free(kc->token);
	free(kc->token_file);
	free(kc->cert_file);
	free(kc->cert_data);
	/* Private key material: do not leave it in freed heap. */
	if (kc->key_data)
		explicit_bzero(kc->key_data, kc->key_data_len);
	free(kc->key_data);
	free(kc->key_file);
	return mfree(kc);
}
