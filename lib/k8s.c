/* k8s: the REST client (see k8s.h).
 *
 * Layers, bottom up: a transport (libcurl, or a test's replay function) that
 * moves one request and streams the body into a sink; do_request(), which
 * adds the server URL, the current bearer token and the deadline and turns
 * status codes, Status objects and transport failures into -errno plus a
 * message; the object calls (get/create/update/patch/delete/list); and the
 * watch, whose newline-delimited JSON is parsed incrementally as curl hands
 * over bytes, so that memory stays bounded however long the stream runs.
 * Watches run through a curl multi handle owned by their k8s_watch so that
 * k8s_watch_stop() can wake a blocked poll from another thread. */
#include "config.h"

#include "lib/k8s.h"

#include "lib/clock.h"
#include "lib/kubeconfig.h"
#include "lib/log.h"
#include "lib/util.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0"
#endif

/* Bounds: a response bigger than this is not one we asked for. */
#define RESPONSE_MAX (16u * 1024 * 1024)
/* The body of an error response is only read for its message. */
#define ERROR_BODY_MAX (1u * 1024 * 1024)
/* Connection setup never needs more than this, whatever the deadline. */
#define CONNECT_TIMEOUT_MS_MAX 10000L
/* Idle curl handles kept for their open connections. */
#define HANDLE_POOL_MAX      4
#define TOKEN_CHECK_INTERVAL USEC_PER_SEC

#define WATCH_TIMEOUT_SECONDS_DEFAULT 60
#define REQUEST_TIMEOUT_MS_DEFAULT    10000L
#define BACKOFF_MIN                   (200 * USEC_PER_MSEC)
#define BACKOFF_MAX                   (5 * USEC_PER_SEC)
/* How long a blocked poll may go without looking at the stop flag; the
 * wakeup normally ends it at once. */
#define POLL_SLICE_MS 100

struct k8s_client {
	struct kubeconfig *kc;

	pthread_mutex_t lock; /* guards everything below */
	char *token;          /* current bearer token, or NULL */
	struct stat token_st; /* identity of the token file when last read */
	usec_t token_checked;
	bool token_warned;
	CURL *pool[HANDLE_POOL_MAX];
	size_t n_pool;

	k8s_transport_fn transport; /* NULL = libcurl */
	void *transport_userdata;
	k8s_error_fn error_hook;
	void *error_userdata;
};

struct k8s_watch {
	CURLM *multi;
	atomic_bool stop;
};

struct k8s_watch_parser {
	char *buf; /* the incomplete line so far */
	size_t len, cap, max;
	k8s_watch_fn cb;
	void *userdata;
	char rv[K8S_RV_MAX];
	int error; /* sticky */
	bool cb_failed;
};

/* ------------------------------------------------------------ status */

int k8s_status_to_errno(long http_status, const char *reason)
{
	if (http_status >= 200 && http_status < 300)
		return 0;
	switch (http_status) {
	case 400:
		return -EBADMSG;
	case 401:
		return -EACCES;
	case 403:
		return -EPERM;
	case 404:
		return -ENOENT;
	case 405:
		return -EOPNOTSUPP;
	case 408:
		return -ETIMEDOUT;
	case 409:
		return reason && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -ESTALE;
	case 410:
		return -EIDRM;
	case 413:
		return -EFBIG;
	case 415:
		return -EOPNOTSUPP;
	case 422:
		return -EINVAL;
	case 429:
		return -EAGAIN;
	case 500:
		return -EIO;
	case 503:
		return -EAGAIN;
	case 504:
		return -ETIMEDOUT;
	default:
		return http_status >= 500 && http_status < 600 ? -EIO : -EPROTO;
	}
}

bool k8s_error_is_retryable(int r)
{
	switch (r < 0 ? -r : r) {
	case EAGAIN:
	case ETIMEDOUT:
	case EIO:
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return true;
	default:
		return false;
	}
}

static const char *http_phrase(long status)
{
	static const struct {
		long code;
		const char *phrase;
	} table[] = {
	        {200, "OK"},
	        {201, "Created"},
	        {202, "Accepted"},
	        {400, "Bad Request"},
	        {401, "Unauthorized"},
	        {403, "Forbidden"},
	        {404, "Not Found"},
	        {405, "Method Not Allowed"},
	        {406, "Not Acceptable"},
	        {408, "Request Timeout"},
	        {409, "Conflict"},
	        {410, "Gone"},
	        {413, "Payload Too Large"},
	        {415, "Unsupported Media Type"},
	        {422, "Unprocessable Entity"},
	        {429, "Too Many Requests"},
	        {500, "Internal Server Error"},
	        {502, "Bad Gateway"},
	        {503, "Service Unavailable"},
	        {504, "Gateway Timeout"},
	};

	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (table[i].code == status)
			return table[i].phrase;
	return "";
}

/* Copy path segment [s, e) into dst (bounded). */
static void seg_copy(char *dst, size_t n, const char *s, const char *e)
{
	size_t l = (size_t)(e - s);

	if (l >= n)
		l = n - 1;
	memcpy(dst, s, l);
	dst[l] = '\0';
}

/* Describe a REST path for messages: `leases.coordination.k8s.io "x" in
 * "ns"`, `pods in "ns"` for a collection.  Unknown shapes are quoted whole. */
static void describe_path(const char *path, char *buf, size_t len)
{
	char segs[8][128], group[130] = "";
	const char *p = path, *end;
	size_t n = 0, i = 0;

	end = path + strcspn(path, "?");
	while (p < end && n < ELEMENTSOF(segs)) {
		const char *s;

		while (p < end && *p == '/')
			p++;
		if (p >= end)
			break;
		s = p;
		while (p < end && *p != '/')
			p++;
		seg_copy(segs[n++], sizeof(segs[0]), s, p);
	}

	if (n >= 3 && strcmp(segs[0], "api") == 0)
		i = 2;
	else if (n >= 4 && strcmp(segs[0], "apis") == 0) {
		snprintf(group, sizeof(group), ".%s", segs[1]);
		i = 3;
	} else {
		snprintf(buf, len, "'%.*s'", (int)(end - path), path);
		return;
	}

	n -= i;
	if (n >= 3 && strcmp(segs[i], "namespaces") == 0) {
		const char *ns = segs[i + 1], *res = segs[i + 2];

		if (n == 3)
			snprintf(buf, len, "%s%s in \"%s\"", res, group, ns);
		else if (n == 4)
			snprintf(buf, len, "%s%s \"%s\" in \"%s\"", res, group, segs[i + 3], ns);
		else
			snprintf(buf, len, "%s%s/%s \"%s\" in \"%s\"", res, group, segs[i + 4],
			         segs[i + 3], ns);
	} else if (n == 1)
		snprintf(buf, len, "%s%s", segs[i], group);
	else if (n == 2)
		snprintf(buf, len, "%s%s \"%s\"", segs[i], group, segs[i + 1]);
	else if (n >= 3)
		snprintf(buf, len, "%s%s/%s \"%s\"", segs[i], group, segs[i + 2], segs[i + 1]);
	else
		snprintf(buf, len, "'%.*s'", (int)(end - path), path);
}

/* A printable, bounded excerpt of a body that is not a Status object. */
static void excerpt(const char *body, size_t len, char *buf, size_t buflen)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 4 < buflen && i < 120; i++)
		buf[o++] = isprint((unsigned char)body[i]) ? body[i] : '.';
	if (len > 120 && o + 4 < buflen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

int k8s_response_error(const char *verb, const char *path, long http_status, const char *body,
                       size_t len, char *err, size_t errlen)
{
	const cJSON *reason = NULL, *message = NULL;
	cJSON *root = NULL;
	char what[512], snippet[160];
	int r;

	if (body && len > 0) {
		root = cJSON_ParseWithLength(body, len);
		if (cJSON_IsObject(root)) {
			reason = cJSON_GetObjectItemCaseSensitive(root, "reason");
			message = cJSON_GetObjectItemCaseSensitive(root, "message");
		}
	}
	r = k8s_status_to_errno(http_status, cJSON_IsString(reason) ? reason->valuestring : NULL);
	describe_path(path ? path : "", what, sizeof(what));
	if (cJSON_IsString(message) && message->valuestring[0])
		errbuf_set(err, errlen, "%s %s: %ld %s: %s", verb, what, http_status,
		           http_phrase(http_status), message->valuestring);
	else if (body && len > 0 && !cJSON_IsObject(root)) {
		excerpt(body, len, snippet, sizeof(snippet));
		errbuf_set(err, errlen, "%s %s: %ld %s: (not a Status object: '%s')", verb, what,
		           http_status, http_phrase(http_status), snippet);
	} else
		errbuf_set(err, errlen, "%s %s: %ld %s: (no message from the server)", verb, what,
		           http_status, http_phrase(http_status));
	cJSON_Delete(root);
	return r;
}

/* ------------------------------------------------------------ paths */

static bool segment_ok(const char *s)
{
	if (!s || !s[0] || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '/' || *p == '?' || *p == '#' || *p == '%' ||
		    isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
			return false;
	return true;
}

int k8s_path(char *buf, size_t len, const char *group_version, const char *ns, const char *resource,
             const char *name)
{
	const char *slash;
	char group[256];
	int n;

	if (!buf || !group_version || !resource)
		return -EINVAL;
	slash = strchr(group_version, '/');
	if (slash) {
		if ((size_t)(slash - group_version) >= sizeof(group))
			return -EINVAL;
		seg_copy(group, sizeof(group), group_version, slash);
		if (!segment_ok(group) || !segment_ok(slash + 1))
			return -EINVAL;
	} else if (!segment_ok(group_version))
		return -EINVAL;
	if (!segment_ok(resource) || (ns && !segment_ok(ns)) || (name && !segment_ok(name)))
		return -EINVAL;

	n = snprintf(buf, len, "/%s/%s%s%s/%s%s%s", slash ? "apis" : "api", group_version,
	             ns ? "/namespaces/" : "", ns ? ns : "", resource, name ? "/" : "",
	             name ? name : "");
	if (n < 0)
		return -EINVAL;
	if ((size_t)n >= len)
		return -ENAMETOOLONG;
	return n;
}

/* A growable string for URLs and queries; sticky -ENOMEM. */
struct sbuf {
	char *s;
	size_t len, cap;
	int error;
};

static void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->error)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *t = realloc(b->s, cap);

		if (!t) {
			b->error = -ENOMEM;
			return;
		}
		b->s = t;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sbuf_adds(struct sbuf *b, const char *s)
{
	sbuf_add(b, s, strlen(s));
}

/* Append `&key=value` (or `?key=value` first), percent-encoding value. */
static void sbuf_query(struct sbuf *b, const char *key, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";

	sbuf_adds(b, b->s && strchr(b->s, '?') ? "&" : "?");
	sbuf_adds(b, key);
	sbuf_adds(b, "=");
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
			sbuf_add(b, (const char *)p, 1);
		else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			sbuf_add(b, e, 3);
		}
	}
}

/* ------------------------------------------------------------ client */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static bool token_file_changed(const struct stat *a, const struct stat *b)
{
	return a->st_dev != b->st_dev || a->st_ino != b->st_ino || a->st_size != b->st_size ||
	       a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

/* Takes ownership of kc. */
static int client_new(struct kubeconfig *kc, struct k8s_client **ret, char *err, size_t errlen)
{
	struct k8s_client *c = NULL;
	int r;

	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK) {
		errbuf_set(err, errlen, "cannot initialise libcurl: %s",
		           curl_easy_strerror(curl_init_result));
		r = -EIO;
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->kc = kc;
	kc = NULL;

	if (c->kc->token_file) {
		/* Stat before reading: a change in between is seen next time. */
		if (stat(c->kc->token_file, &c->token_st) < 0) {
			r = -errno;
			errbuf_set(err, errlen, "%s: token file '%s': %s", c->kc->source,
			           c->kc->token_file, strerror(-r));
			goto out;
		}
		r = kubeconfig_read_token_file(c->kc->token_file, &c->token);
		if (r < 0) {
			errbuf_set(err, errlen, "%s: token file '%s': %s", c->kc->source,
			           c->kc->token_file,
			           r == -ENODATA ? "file is empty" : strerror(-r));
			goto out;
		}
		c->token_checked = clock_mono_usec();
	} else if (c->kc->token) {
		c->token = strdup(c->kc->token);
		if (!c->token) {
			r = -ENOMEM;
			goto out;
		}
	}

	*ret = c;
	c = NULL;
	r = 0;
out:
	kubeconfig_free(kc);
	k8s_client_free(c);
	return r;
}

int k8s_client_new_from_kubeconfig(const char *path, const char *context, struct k8s_client **ret,
                                   char *err, size_t errlen)
{
	struct kubeconfig *kc = NULL;
	int r;

	r = kubeconfig_load(path, context, &kc, err, errlen);
	if (r < 0)
		return r;
	return client_new(kc, ret, err, errlen);
}

int k8s_client_new_in_cluster(const char *sa_dir, struct k8s_client **ret, char *err, size_t errlen)
{
	struct kubeconfig *kc = NULL;
	int r;

	r = kubeconfig_load_in_cluster(sa_dir, &kc, err, errlen);
	if (r < 0)
		return r;
	return client_new(kc, ret, err, errlen);
}

int k8s_client_new(const char *kubeconfig_or_in_cluster, const char *context,
                   struct k8s_client **ret, char *err, size_t errlen)
{
	if (!kubeconfig_or_in_cluster || !kubeconfig_or_in_cluster[0]) {
		errbuf_set(err, errlen, "no kubeconfig given (a path, or \"%s\")", K8S_IN_CLUSTER);
		return -EINVAL;
	}
	if (strcmp(kubeconfig_or_in_cluster, K8S_IN_CLUSTER) == 0)
		return k8s_client_new_in_cluster(NULL, ret, err, errlen);
	return k8s_client_new_from_kubeconfig(kubeconfig_or_in_cluster, context, ret, err, errlen);
}

struct k8s_client *k8s_client_free(struct k8s_client *c)
{
	if (!c)
		return NULL;
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->token);
	kubeconfig_free(c->kc);
	pthread_mutex_destroy(&c->lock);
	return mfree(c);
}

const char *k8s_client_server(const struct k8s_client *c)
{
	return c->kc->server;
}

const char *k8s_client_namespace(const struct k8s_client *c)
{
	return c->kc->namespace;
}

void k8s_client_set_transport(struct k8s_client *c, k8s_transport_fn fn, void *userdata)
{
	c->transport = fn;
	c->transport_userdata = userdata;
}

void k8s_client_set_error_hook(struct k8s_client *c, k8s_error_fn fn, void *userdata)
{
	c->error_hook = fn;
	c->error_userdata = userdata;
}

/* A copy of the current token (NULL when there is none), re-reading the
 * token file when it changed, at most once per TOKEN_CHECK_INTERVAL. */
static int client_token(struct k8s_client *c, char **ret)
{
	char *copy = NULL, *fresh = NULL;
	struct stat st;
	usec_t now;
	int r = 0;

	pthread_mutex_lock(&c->lock);
	now = clock_mono_usec();
	if (c->kc->token_file && now - c->token_checked >= TOKEN_CHECK_INTERVAL) {
		c->token_checked = now;
		if (stat(c->kc->token_file, &st) < 0)
			r = -errno;
		else if (token_file_changed(&st, &c->token_st)) {
			r = kubeconfig_read_token_file(c->kc->token_file, &fresh);
			if (r >= 0) {
				if (c->token)
					explicit_bzero(c->token, strlen(c->token));
				free(c->token);
				c->token = fresh;
				c->token_st = st;
				log_debug("re-read rotated token from '%s'", c->kc->token_file);
			}
		}
		/* Keeping the old token is the decision made here: it stays valid
		 * for a while after rotation, and failing every request because
		 * of a transient read error would be worse. */
		if (r < 0 && !c->token_warned)
			log_warning("cannot re-read token file '%s': %s; keeping the previous "
			            "token",
			            c->kc->token_file, strerror(-r));
		c->token_warned = r < 0;
		r = 0;
	}
	if (c->token) {
		copy = strdup(c->token);
		if (!copy)
			r = -ENOMEM;
	}
	pthread_mutex_unlock(&c->lock);
	if (r >= 0)
		*ret = copy;
	return r;
}

static CURL *handle_get(struct k8s_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_pool > 0)
		h = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_reset(h); /* keeps its live connection and TLS session */
	else
		h = curl_easy_init();
	return h;
}

static void handle_put(struct k8s_client *c, CURL *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->n_pool < HANDLE_POOL_MAX) {
		c->pool[c->n_pool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_cleanup(h);
}

/* ------------------------------------------------------------ curl transport */

struct xfer {
	CURL *h;
	k8s_sink_fn sink;
	void *sink_ctx;
	int error; /* the sink's, when it aborted the transfer */
};

static size_t xfer_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	long status = 0;
	int r;

	(void)curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	r = x->sink(x->sink_ctx, status, ptr, n);
	if (r < 0) {
		x->error = r;
		return 0; /* makes curl abort with CURLE_WRITE_ERROR */
	}
	return n;
}

static int curl_to_errno(CURLcode cc, long os_errno)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		if (os_errno == EHOSTUNREACH || os_errno == ENETUNREACH)
			return (int)-os_errno;
		return -ECONNREFUSED;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
		return -EKEYREJECTED;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		return os_errno == ECONNRESET ? -ECONNRESET : -EIO;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static const char *errno_phrase(int r)
{
	switch (r) {
	case -ETIMEDOUT:
		return "deadline passed";
	case -ECONNREFUSED:
		return "connection refused";
	case -EKEYREJECTED:
		return "TLS verification of the API server failed";
	case -ECONNRESET:
		return "connection reset";
	default:
		return strerror(-r);
	}
}

/* Set TLS trust and client identity; TLS verification is never turned off. */
static void curl_set_tls(CURL *h, const struct kubeconfig *kc)
{
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	(void)curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (kc->ca_data) {
		struct curl_blob blob = {kc->ca_data, kc->ca_data_len, CURL_BLOB_COPY};

		/* Trust only the cluster CA, not the system store too. */
		(void)curl_easy_setopt(h, CURLOPT_CAINFO, NULL);
		(void)curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
		(void)curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
	} else if (kc->ca_file) {
		(void)curl_easy_setopt(h, CURLOPT_CAINFO, kc->ca_file);
		(void)curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	}
	if (kc->cert_data) {
		struct curl_blob blob = {kc->cert_data, kc->cert_data_len, CURL_BLOB_COPY};

		(void)curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
	} else if (kc->cert_file)
		(void)curl_easy_setopt(h, CURLOPT_SSLCERT, kc->cert_file);
	if (kc->key_data) {
		struct curl_blob blob = {kc->key_data, kc->key_data_len, CURL_BLOB_COPY};

		(void)curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
	} else if (kc->key_file)
		(void)curl_easy_setopt(h, CURLOPT_SSLKEY, kc->key_file);
	if (kc->cert_data || kc->cert_file) {
		(void)curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
		(void)curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
	}
}

/* Run h, through w's multi handle when w is given so that k8s_watch_stop()
 * can interrupt it; returns the curl result, or -ECANCELED / -errno. */
static int curl_run(CURL *h, struct k8s_watch *w, CURLcode *ret_cc)
{
	CURLMcode mc;
	int running = 1, r = 0;

	if (!w) {
		*ret_cc = curl_easy_perform(h);
		return 0;
	}
	if (atomic_load(&w->stop))
		return -ECANCELED;
	if (curl_multi_add_handle(w->multi, h) != CURLM_OK)
		return -ENOMEM;
	*ret_cc = CURLE_OK;
	for (;;) {
		CURLMsg *msg;
		int left;

		mc = curl_multi_perform(w->multi, &running);
		if (mc != CURLM_OK) {
			r = -EIO;
			break;
		}
		while ((msg = curl_multi_info_read(w->multi, &left)))
			if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) {
				*ret_cc = msg->data.result;
				running = 0;
			}
		if (!running)
			break;
		if (atomic_load(&w->stop)) {
			r = -ECANCELED;
			break;
		}
		mc = curl_multi_poll(w->multi, NULL, 0, POLL_SLICE_MS, NULL);
		if (mc != CURLM_OK) {
			r = -EIO;
			break;
		}
		if (atomic_load(&w->stop)) {
			r = -ECANCELED;
			break;
		}
	}
	(void)curl_multi_remove_handle(w->multi, h);
	return r;
}

static int slist_add(struct curl_slist **l, const char *s)
{
	struct curl_slist *t = curl_slist_append(*l, s);

	if (!t)
		return -ENOMEM;
	*l = t;
	return 0;
}

static int curl_transport(struct k8s_client *c, struct k8s_watch *w,
                          const struct k8s_http_request *req, k8s_sink_fn sink, void *sink_ctx,
                          long *ret_status, char *err, size_t errlen)
{
	char curl_err[CURL_ERROR_SIZE] = "", hdr[64];
	struct curl_slist *headers = NULL;
	struct sbuf auth = {0};
	struct xfer x = {.sink = sink, .sink_ctx = sink_ctx};
	CURLcode cc = CURLE_OK;
	long status = 0, os_errno = 0;
	CURL *h = NULL;
	int r;

	h = handle_get(c);
	if (!h) {
		r = -ENOMEM;
		goto out;
	}
	x.h = h;

	if (req->authorization) {
		sbuf_adds(&auth, "Authorization: ");
		sbuf_adds(&auth, req->authorization);
	}
	if (req->content_type)
		snprintf(hdr, sizeof(hdr), "Content-Type: %s", req->content_type);
	/* "Expect:" avoids a 100-continue round trip for larger bodies. */
	if (auth.error || slist_add(&headers, "Accept: application/json") < 0 ||
	    slist_add(&headers, "Expect:") < 0 ||
	    (req->content_type && slist_add(&headers, hdr) < 0) ||
	    (auth.s && slist_add(&headers, auth.s) < 0)) {
		r = -ENOMEM;
		goto out;
	}

	(void)curl_easy_setopt(h, CURLOPT_URL, req->url);
	(void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	(void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	(void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
	                       req->timeout_ms < CONNECT_TIMEOUT_MS_MAX ? req->timeout_ms
	                                                                : CONNECT_TIMEOUT_MS_MAX);
	(void)curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	(void)curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	(void)curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
	(void)curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
	(void)curl_easy_setopt(h, CURLOPT_USERAGENT, "kubefence/" PACKAGE_VERSION);
	(void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	(void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
	(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, xfer_write);
	(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_set_tls(h, c->kc);
	if (strcmp(req->method, "GET") != 0)
		(void)curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body) {
		(void)curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
		(void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
	}

	r = curl_run(h, w, &cc);
	if (r < 0) {
		if (r == -ECANCELED)
			errbuf_set(err, errlen, "stopped");
		else
			errbuf_set(err, errlen, "curl multi interface failed");
		goto out;
	}
	if (cc != CURLE_OK) {
		if (x.error < 0) {
			r = x.error;
			goto out;
		}
		(void)curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
		r = curl_to_errno(cc, os_errno);
		errbuf_set(err, errlen, "%s: %s (curl error %d: %s)", req->url, errno_phrase(r),
		           (int)cc, curl_err[0] ? curl_err : curl_easy_strerror(cc));
		goto out;
	}
	(void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	*ret_status = status;
	r = 0;
out:
	if (h) {
		/* The handle outlives these; do not leave dangling pointers. */
		(void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		(void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
		handle_put(c, h);
	}
	curl_slist_free_all(headers);
	if (auth.s)
		explicit_bzero(auth.s, auth.len);
	free(auth.s);
	return r;
}

/* ------------------------------------------------------------ requests */

static bool all_space(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isspace((unsigned char)s[i]))
			return false;
	return true;
}

/* Collects a response body up to a bound, or hands a 2xx watch stream to a
 * parser. */
struct response {
	char *data;
	size_t len, cap, max;
	long status;
	struct k8s_watch_parser *parser; /* watch requests only */
	char parser_err[512];
};

static int response_sink(void *ctx, long http_status, const char *data, size_t len)
{
	struct response *resp = ctx;
	size_t max;

	resp->status = http_status;
	if (resp->parser && http_status >= 200 && http_status < 300)
		return k8s_watch_parser_feed(resp->parser, data, len, resp->parser_err,
		                             sizeof(resp->parser_err));

	max = http_status >= 200 && http_status < 300 ? resp->max : ERROR_BODY_MAX;
	if (len > max - resp->len) {
		/* Only the start of an error body matters, for its message. */
		if (!(http_status >= 200 && http_status < 300))
			return 0;
		return -EFBIG;
	}
	if (resp->len + len + 1 > resp->cap) {
		size_t cap = resp->cap ? resp->cap : 4096;
		char *t;

		while (cap < resp->len + len + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		t = realloc(resp->data, cap);
		if (!t)
			return -ENOMEM;
		resp->data = t;
		resp->cap = cap;
	}
	memcpy(resp->data + resp->len, data, len);
	resp->len += len;
	resp->data[resp->len] = '\0';
	return 0;
}

/* One request.  `path` may carry a query.  On 2xx, when ret is given, the
 * body must be a JSON object and is returned parsed. */
static int do_request(struct k8s_client *c, struct k8s_watch *w, const char *method,
                      const char *path, const char *content_type, const char *body, long timeout_ms,
                      struct k8s_watch_parser *parser, cJSON **ret, char *err, size_t errlen)
{
	struct response resp = {.max = RESPONSE_MAX, .parser = parser};
	struct k8s_http_request req = {0};
	struct sbuf url = {0};
	char *token = NULL, *auth = NULL, terr[512] = "", what[512];
	cJSON *obj = NULL;
	long status = 0;
	usec_t start = clock_mono_usec();
	int r;

	describe_path(path, what, sizeof(what));
	if (timeout_ms <= 0 || !path || path[0] != '/') {
		errbuf_set(err, errlen, "%s %s: invalid request (path '%s', timeout %ld ms)",
		           method, what, path ? path : "", timeout_ms);
		r = -EINVAL;
		goto out;
	}
	sbuf_adds(&url, c->kc->server);
	sbuf_adds(&url, path);
	r = client_token(c, &token);
	if (r < 0 || url.error) {
		r = r < 0 ? r : url.error;
		errbuf_set(err, errlen, "%s %s: %s", method, what, strerror(-r));
		goto out;
	}
	if (token && asprintf(&auth, "Bearer %s", token) < 0) {
		auth = NULL;
		r = -ENOMEM;
		errbuf_set(err, errlen, "%s %s: %s", method, what, strerror(-r));
		goto out;
	}

	req.method = method;
	req.url = url.s;
	req.authorization = auth;
	req.content_type = body ? content_type : NULL;
	req.body = body;
	req.body_len = body ? strlen(body) : 0;
	req.timeout_ms = timeout_ms;
	if (c->transport)
		r = c->transport(&req, response_sink, &resp, &status, terr, sizeof(terr),
		                 c->transport_userdata);
	else
		r = curl_transport(c, w, &req, response_sink, &resp, &status, terr, sizeof(terr));
	log_debug("%s %s -> %ld, r=%d (%" PRId64 " ms)", method, path, status, r,
	          (clock_mono_usec() - start) / USEC_PER_MSEC);

	if (r < 0) {
		if (parser && resp.parser_err[0])
			errbuf_set(err, errlen, "%s %s: watch: %s", method, what, resp.parser_err);
		else if (r == -EFBIG)
			errbuf_set(err, errlen, "%s %s: response larger than %u bytes", method,
			           what, RESPONSE_MAX);
		else
			errbuf_set(err, errlen, "%s %s: %s", method, what,
			           terr[0] ? terr : strerror(-r));
		goto out;
	}
	if (status < 200 || status >= 300) {
		r = k8s_response_error(method, path, status, resp.data, resp.len, err, errlen);
		if (r == 0)
			r = -EPROTO;
		goto out;
	}
	if (parser) {
		r = k8s_watch_parser_finish(parser, resp.parser_err, sizeof(resp.parser_err));
		if (r < 0)
			errbuf_set(err, errlen, "%s %s: watch: %s", method, what, resp.parser_err);
		goto out;
	}
	if (ret) {
		const char *end = NULL;

		obj = resp.data ? cJSON_ParseWithLengthOpts(resp.data, resp.len, &end, false)
		                : NULL;
		if (!cJSON_IsObject(obj) || !end ||
		    !all_space(end, resp.len - (size_t)(end - resp.data))) {
			errbuf_set(err, errlen,
			           "%s %s: %ld %s, but the response is not a JSON object", method,
			           what, status, http_phrase(status));
			r = -EBADMSG;
			goto out;
		}
		*ret = obj;
		obj = NULL;
	}
	r = 0;
out:
	if (r < 0 && !parser && c->error_hook)
		c->error_hook(c->error_userdata, r);
	cJSON_Delete(obj);
	free(resp.data);
	free(url.s);
	if (token)
		explicit_bzero(token, strlen(token));
	free(token);
	if (auth)
		explicit_bzero(auth, strlen(auth));
	free(auth);
	return r;
}

/* Serialise obj and send it. */
static int do_request_json(struct k8s_client *c, const char *method, const char *path,
                           const char *content_type, const cJSON *obj, long timeout_ms, cJSON **ret,
                           char *err, size_t errlen)
{
	char *body = NULL;
	int r;

	if (!cJSON_IsObject(obj)) {
		errbuf_set(err, errlen, "%s '%s': the body must be a JSON object", method,
		           path ? path : "");
		return -EINVAL;
	}
	body = cJSON_PrintUnformatted(obj);
	if (!body) {
		errbuf_set(err, errlen, "%s '%s': out of memory", method, path ? path : "");
		return -ENOMEM;
	}
	r = do_request(c, NULL, method, path, content_type, body, timeout_ms, NULL, ret, err,
	               errlen);
	free(body);
	return r;
}

int k8s_get(struct k8s_client *c, const char *path, long timeout_ms, cJSON **ret, char *err,
            size_t errlen)
{
	return do_request(c, NULL, "GET", path, NULL, NULL, timeout_ms, NULL, ret, err, errlen);
}

int k8s_create(struct k8s_client *c, const char *collection_path, const cJSON *obj, long timeout_ms,
               cJSON **ret, char *err, size_t errlen)
{
	return do_request_json(c, "POST", collection_path, "application/json", obj, timeout_ms, ret,
	                       err, errlen);
}

int k8s_update(struct k8s_client *c, const char *path, const cJSON *obj, long timeout_ms,
               cJSON **ret, char *err, size_t errlen)
{
	return do_request_json(c, "PUT", path, "application/json", obj, timeout_ms, ret, err,
	                       errlen);
}

int k8s_merge_patch(struct k8s_client *c, const char *path, const cJSON *patch, long timeout_ms,
                    cJSON **ret, char *err, size_t errlen)
{
	return do_request_json(c, "PATCH", path, "application/merge-patch+json", patch, timeout_ms,
	                       ret, err, errlen);
}

int k8s_delete(struct k8s_client *c, const char *path, int grace_seconds, const char *uid,
               const char *resource_version, long timeout_ms, char *err, size_t errlen)
{
	cJSON *opts = NULL, *pre = NULL;
	int r;

	opts = cJSON_CreateObject();
	if (!opts || !cJSON_AddStringToObject(opts, "kind", "DeleteOptions") ||
	    !cJSON_AddStringToObject(opts, "apiVersion", "v1") ||
	    (grace_seconds >= 0 &&
	     !cJSON_AddNumberToObject(opts, "gracePeriodSeconds", grace_seconds))) {
		r = -ENOMEM;
		goto out;
	}
	if (uid || resource_version) {
		pre = cJSON_AddObjectToObject(opts, "preconditions");
		if (!pre || (uid && !cJSON_AddStringToObject(pre, "uid", uid)) ||
		    (resource_version &&
		     !cJSON_AddStringToObject(pre, "resourceVersion", resource_version))) {
			r = -ENOMEM;
			goto out;
		}
	}
	r = do_request_json(c, "DELETE", path, "application/json", opts, timeout_ms, NULL, err,
	                    errlen);
out:
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "DELETE '%s': out of memory", path ? path : "");
	cJSON_Delete(opts);
	return r;
}

static int list_internal(struct k8s_client *c, struct k8s_watch *w, const char *collection_path,
                         const char *label_selector, const char *field_selector, long timeout_ms,
                         cJSON **ret, char *err, size_t errlen)
{
	struct sbuf path = {0};
	cJSON *list = NULL, *items;
	char what[512];
	int r;

	if (!collection_path || strchr(collection_path, '?')) {
		errbuf_set(err, errlen, "LIST: invalid collection path '%s'",
		           collection_path ? collection_path : "");
		r = -EINVAL;
		goto out;
	}
	sbuf_adds(&path, collection_path);
	if (label_selector)
		sbuf_query(&path, "labelSelector", label_selector);
	if (field_selector)
		sbuf_query(&path, "fieldSelector", field_selector);
	if (path.error) {
		r = path.error;
		goto out;
	}
	r = do_request(c, w, "GET", path.s, NULL, NULL, timeout_ms, NULL, &list, err, errlen);
	if (r < 0)
		goto out;
	items = cJSON_GetObjectItemCaseSensitive(list, "items");
	if (!items || cJSON_IsNull(items)) {
		/* An empty list may come as null; callers get [] either way. */
		cJSON_DeleteItemFromObjectCaseSensitive(list, "items");
		if (!cJSON_AddArrayToObject(list, "items")) {
			r = -ENOMEM;
			goto out;
		}
	} else if (!cJSON_IsArray(items)) {
		describe_path(collection_path, what, sizeof(what));
		errbuf_set(err, errlen, "GET %s: the List's items is not an array", what);
		r = -EBADMSG;
		goto out;
	}
	if (ret) {
		*ret = list;
		list = NULL;
	}
	r = 0;
out:
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "GET '%s': out of memory",
		           collection_path ? collection_path : "");
	cJSON_Delete(list);
	free(path.s);
	return r;
}

int k8s_list(struct k8s_client *c, const char *collection_path, const char *label_selector,
             const char *field_selector, long timeout_ms, cJSON **ret, char *err, size_t errlen)
{
	return list_internal(c, NULL, collection_path, label_selector, field_selector, timeout_ms,
	                     ret, err, errlen);
}

/* ------------------------------------------------------------ watch parser */

int k8s_watch_parser_new(size_t max_event, k8s_watch_fn cb, void *userdata,
                         struct k8s_watch_parser **ret)
{
	struct k8s_watch_parser *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->max = max_event ? max_event : K8S_WATCH_EVENT_MAX;
	p->cb = cb;
	p->userdata = userdata;
	*ret = p;
	return 0;
}

struct k8s_watch_parser *k8s_watch_parser_free(struct k8s_watch_parser *p)
{
	if (!p)
		return NULL;
	free(p->buf);
	return mfree(p);
}

const char *k8s_watch_parser_rv(const struct k8s_watch_parser *p)
{
	return p->rv;
}

bool k8s_watch_parser_callback_failed(const struct k8s_watch_parser *p)
{
	return p->cb_failed;
}

static int handle_event(struct k8s_watch_parser *p, const char *line, size_t len, char *err,
                        size_t errlen)
{
	static const struct {
		const char *name;
		enum k8s_event type;
	} types[] = {
	        {"ADDED", K8S_EVENT_ADDED},
	        {"MODIFIED", K8S_EVENT_MODIFIED},
	        {"DELETED", K8S_EVENT_DELETED},
	};
	const cJSON *type, *obj, *meta, *rv;
	const char *end = NULL;
	cJSON *root = NULL;
	char snippet[160];
	int r;

	if (all_space(line, len))
		return 0;
	root = cJSON_ParseWithLengthOpts(line, len, &end, false);
	if (!root || !end || !all_space(end, len - (size_t)(end - line))) {
		excerpt(line, len, snippet, sizeof(snippet));
		errbuf_set(err, errlen, "malformed event (%zu bytes): '%s'", len, snippet);
		r = -EBADMSG;
		goto out;
	}
	type = cJSON_GetObjectItemCaseSensitive(root, "type");
	obj = cJSON_GetObjectItemCaseSensitive(root, "object");
	if (!cJSON_IsObject(root) || !cJSON_IsString(type) || !cJSON_IsObject(obj)) {
		errbuf_set(err, errlen, "event without a string type and an object");
		r = -EBADMSG;
		goto out;
	}

	if (strcmp(type->valuestring, "ERROR") == 0) {
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
		const cJSON *reason = cJSON_GetObjectItemCaseSensitive(obj, "reason");
		const cJSON *msg = cJSON_GetObjectItemCaseSensitive(obj, "message");
		long status = cJSON_IsNumber(code) ? (long)code->valuedouble : 0;

		r = status ? k8s_status_to_errno(
		                     status, cJSON_IsString(reason) ? reason->valuestring : NULL)
		           : -EIO;
		if (r == 0)
			r = -EIO;
		errbuf_set(err, errlen, "ERROR event: %ld %s: %s", status, http_phrase(status),
		           cJSON_IsString(msg) ? msg->valuestring : "(no message)");
		goto out;
	}

	meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	rv = cJSON_GetObjectItemCaseSensitive(meta, "resourceVersion");
	if (rv && (!cJSON_IsString(rv) || strlen(rv->valuestring) >= sizeof(p->rv))) {
		errbuf_set(err, errlen, "event with an invalid metadata.resourceVersion");
		r = -EBADMSG;
		goto out;
	}

	if (strcmp(type->valuestring, "BOOKMARK") != 0) {
		size_t i;

		for (i = 0; i < ELEMENTSOF(types); i++)
			if (strcmp(type->valuestring, types[i].name) == 0)
				break;
		if (i == ELEMENTSOF(types)) {
			errbuf_set(err, errlen, "event of unknown type '%.64s'", type->valuestring);
			r = -EBADMSG;
			goto out;
		}
		r = p->cb ? p->cb(types[i].type, obj, p->userdata) : 0;
		if (r < 0) {
			p->cb_failed = true;
			errbuf_set(err, errlen, "event callback failed: %s", strerror(-r));
			goto out;
		}
	}
	/* Only after delivery: a resumed watch must not skip this event. */
	if (cJSON_IsString(rv))
		(void)str_copy(p->rv, sizeof(p->rv), rv->valuestring);
	r = 0;
out:
	cJSON_Delete(root);
	return r;
}

static int parser_append(struct k8s_watch_parser *p, const char *data, size_t len)
{
	if (len > p->max - p->len)
		return -EBADMSG;
	if (p->len + len > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		char *t;

		while (cap < p->len + len)
			cap *= 2;
		if (cap > p->max)
			cap = p->max;
		t = realloc(p->buf, cap);
		if (!t)
			return -ENOMEM;
		p->buf = t;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, len);
	p->len += len;
	return 0;
}

int k8s_watch_parser_feed(struct k8s_watch_parser *p, const char *data, size_t len, char *err,
                          size_t errlen)
{
	int r = 0;

	if (p->error)
		return p->error;
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;

		if (n > p->max - p->len) {
			errbuf_set(err, errlen, "event larger than %zu bytes", p->max);
			r = -EBADMSG;
		} else if (nl && p->len == 0) {
			/* A whole line in this chunk: parse it in place. */
			r = handle_event(p, data, n, err, errlen);
		} else {
			r = parser_append(p, data, n);
			if (r == 0 && nl) {
				r = handle_event(p, p->buf, p->len, err, errlen);
				p->len = 0;
			}
		}
		if (r < 0)
			break;
		if (!nl)
			break;
		data = nl + 1;
		len -= n + 1;
	}
	p->error = r;
	return r;
}

int k8s_watch_parser_finish(struct k8s_watch_parser *p, char *err, size_t errlen)
{
	int r;

	if (p->error)
		return p->error;
	if (p->len == 0 || all_space(p->buf, p->len))
		return 0;
	/* A final event without its newline is whole if it parses; a cut one
	 * does not. */
	r = handle_event(p, p->buf, p->len, err, errlen);
	if (r == -EBADMSG && !p->cb_failed)
		errbuf_set(err, errlen, "stream ended inside an event (%zu bytes)", p->len);
	p->len = 0;
	p->error = r;
	return r;
}

/* ------------------------------------------------------------ watch */

int k8s_watch_new(struct k8s_watch **ret)
{
	struct k8s_watch *w;

	pthread_once(&curl_once, curl_init_once);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->multi = curl_multi_init();
	if (!w->multi) {
		free(w);
		return -ENOMEM;
	}
	atomic_init(&w->stop, false);
	*ret = w;
	return 0;
}

struct k8s_watch *k8s_watch_free(struct k8s_watch *w)
{
	if (!w)
		return NULL;
	(void)curl_multi_cleanup(w->multi);
	return mfree(w);
}

void k8s_watch_stop(struct k8s_watch *w)
{
	atomic_store(&w->stop, true);
	/* Ends a curl_multi_poll() in progress, or the next one at once. */
	(void)curl_multi_wakeup(w->multi);
}

bool k8s_watch_is_stopped(const struct k8s_watch *w)
{
	return atomic_load(&((struct k8s_watch *)w)->stop);
}

static void opts_resolve(const struct k8s_watch_opts *opts, struct k8s_watch_opts *o)
{
	*o = opts ? *opts : (struct k8s_watch_opts){0};
	if (o->timeout_seconds <= 0)
		o->timeout_seconds = WATCH_TIMEOUT_SECONDS_DEFAULT;
	if (o->request_timeout_ms <= 0)
		o->request_timeout_ms = REQUEST_TIMEOUT_MS_DEFAULT;
}

/* Like k8s_watch_once(); *ret_cb_failed tells whether the error is the
 * callback's, *ret_events how many events (bookmarks too) arrived. */
static int watch_once(struct k8s_client *c, struct k8s_watch *w, const char *collection_path,
                      const struct k8s_watch_opts *opts, char rv[static K8S_RV_MAX],
                      long timeout_ms, k8s_watch_fn cb, void *userdata, bool *ret_cb_failed,
                      bool *ret_progress, char *err, size_t errlen)
{
	struct k8s_watch_parser *p = NULL;
	struct k8s_watch_opts o;
	struct sbuf path = {0};
	char num[32];
	int r;

	opts_resolve(opts, &o);
	if (!collection_path || strchr(collection_path, '?')) {
		errbuf_set(err, errlen, "WATCH: invalid collection path '%s'",
		           collection_path ? collection_path : "");
		r = -EINVAL;
		goto out;
	}
	r = k8s_watch_parser_new(0, cb, userdata, &p);
	if (r < 0)
		goto out;
	(void)str_copy(p->rv, sizeof(p->rv), rv);

	snprintf(num, sizeof(num), "%d", o.timeout_seconds);
	sbuf_adds(&path, collection_path);
	sbuf_query(&path, "watch", "1");
	if (rv[0])
		sbuf_query(&path, "resourceVersion", rv);
	sbuf_query(&path, "allowWatchBookmarks", "true");
	sbuf_query(&path, "timeoutSeconds", num);
	if (o.label_selector)
		sbuf_query(&path, "labelSelector", o.label_selector);
	if (o.field_selector)
		sbuf_query(&path, "fieldSelector", o.field_selector);
	if (path.error) {
		r = path.error;
		goto out;
	}
	r = do_request(c, w, "GET", path.s, NULL, NULL, timeout_ms, p, NULL, err, errlen);
out:
	if (p) {
		if (ret_progress)
			*ret_progress = strcmp(p->rv, rv) != 0 || r == 0;
		if (ret_cb_failed)
			*ret_cb_failed = p->cb_failed;
		(void)str_copy(rv, K8S_RV_MAX, p->rv);
	}
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "WATCH '%s': out of memory",
		           collection_path ? collection_path : "");
	k8s_watch_parser_free(p);
	free(path.s);
	return r;
}

int k8s_watch_once(struct k8s_client *c, struct k8s_watch *w, const char *collection_path,
                   const struct k8s_watch_opts *opts, char rv[static K8S_RV_MAX], long timeout_ms,
                   k8s_watch_fn cb, void *userdata, char *err, size_t errlen)
{
	return watch_once(c, w, collection_path, opts, rv, timeout_ms, cb, userdata, NULL, NULL,
	                  err, errlen);
}

/* Sleep for `usec`, waking early when w is stopped. */
static void watch_sleep(struct k8s_watch *w, usec_t usec)
{
	usec_t deadline = clock_mono_usec() + usec;

	for (;;) {
		usec_t now = clock_mono_usec();

		if (atomic_load(&w->stop) || now >= deadline)
			return;
		/* With no transfers this waits for the timeout or a wakeup. */
		(void)curl_multi_poll(w->multi, NULL, 0,
		                      (int)((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC),
		                      NULL);
	}
}

int k8s_watch_loop(struct k8s_client *c, struct k8s_watch *w, const char *collection_path,
                   const struct k8s_watch_opts *opts, k8s_watch_fn cb, void *userdata, char *err,
                   size_t errlen)
{
	char rv[K8S_RV_MAX] = "", e[1024], what[512];
	struct k8s_watch_opts o;
	bool need_list = true;
	usec_t backoff = 0;
	int r = 0;

	opts_resolve(opts, &o);
	describe_path(collection_path ? collection_path : "", what, sizeof(what));
	while (!atomic_load(&w->stop)) {
		bool cb_failed = false, progress = false;

		if (backoff > 0) {
			watch_sleep(w, backoff);
			if (atomic_load(&w->stop))
				break;
		}

		if (need_list) {
			const cJSON *lrv;
			cJSON *list = NULL;

			e[0] = '\0';
			r = list_internal(c, w, collection_path, o.label_selector, o.field_selector,
			                  o.request_timeout_ms, &list, e, sizeof(e));
			lrv = cJSON_GetObjectItemCaseSensitive(
			        cJSON_GetObjectItemCaseSensitive(list, "metadata"),
			        "resourceVersion");
			if (r >= 0 && (!cJSON_IsString(lrv) || !lrv->valuestring[0] ||
			               strlen(lrv->valuestring) >= sizeof(rv))) {
				snprintf(e, sizeof(e), "GET %s: List without a resourceVersion",
				         what);
				r = -EBADMSG;
			}
			if (r >= 0) {
				(void)str_copy(rv, sizeof(rv), lrv->valuestring);
				r = cb(K8S_EVENT_SYNC, list, userdata);
				cJSON_Delete(list);
				if (r < 0) {
					errbuf_set(err, errlen, "watch of %s: callback failed: %s",
					           what, strerror(-r));
					goto out;
				}
				need_list = false;
				backoff = 0;
			} else
				cJSON_Delete(list);
		}

		if (!need_list) {
			e[0] = '\0';
			r = watch_once(c, w, collection_path, &o, rv,
			               (long)o.timeout_seconds * 1000 + o.request_timeout_ms, cb,
			               userdata, &cb_failed, &progress, e, sizeof(e));
			if (r >= 0 || r == -ECANCELED) {
				/* The server ended the watch; resume where it left off. */
				backoff = 0;
				continue;
			}
			if (cb_failed) {
				errbuf_set(err, errlen, "%s", e);
				goto out;
			}
			if (progress)
				backoff = 0;
			if (r == -EIDRM) {
				log_info("watch of %s: resourceVersion %s expired (%s), relisting",
				         what, rv, e);
				need_list = true;
				backoff = 0;
				continue;
			}
			if (r == -EBADMSG)
				need_list = true;
		}

		if (r == -ECANCELED)
			continue;
		if (!k8s_error_is_retryable(r) && r != -EBADMSG) {
			errbuf_set(err, errlen, "%s", e);
			goto out;
		}
		backoff = backoff ? backoff * 2 : BACKOFF_MIN;
		if (backoff > BACKOFF_MAX)
			backoff = BACKOFF_MAX;
		log_warning("%s, %s in %" PRId64 " ms", e, need_list ? "relisting" : "resuming",
		            backoff / USEC_PER_MSEC);
	}
	r = 0;
out:
	return r;
}

/* ------------------------------------------------ names, for conf tables */

#define DNS1123_LABEL_MAX     63
#define DNS1123_SUBDOMAIN_MAX 253

/* Lowercase alphanumerics and '-', each label starting and ending with an
 * alphanumeric; a subdomain is labels joined by '.'. */
static bool dns1123_valid(const char *s, size_t max, bool dots)
{
	size_t len = strlen(s);
	bool label_start = true;

	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (ch == '.' && dots) {
			if (label_start || s[i - 1] == '-')
				return false;
			label_start = true;
			continue;
		}
		if (!alnum && !(ch == '-' && !label_start))
			return false;
		label_start = false;
	}
	return s[len - 1] != '-' && s[len - 1] != '.';
}

int k8s_conf_validate_subdomain(const union conf_value *v, char *err, size_t errlen)
{
	if (dns1123_valid(v->str, DNS1123_SUBDOMAIN_MAX, true))
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and "
	           "'.', starting and ending with a letter or digit, at most %d characters)",
	           v->str, DNS1123_SUBDOMAIN_MAX);
	return -EINVAL;
}

int k8s_conf_validate_subdomain_or_empty(const union conf_value *v, char *err, size_t errlen)
{
	return v->str[0] == '\0' ? 0 : k8s_conf_validate_subdomain(v, err, errlen);
}

int k8s_conf_validate_label(const union conf_value *v, char *err, size_t errlen)
{
	if (dns1123_valid(v->str, DNS1123_LABEL_MAX, false))
		return 0;
	errbuf_set(err, errlen,
	           "'%s' is not a valid DNS-1123 label (lowercase letters, digits and '-', "
	           "starting and ending with a letter or digit, at most %d characters)",
	           v->str, DNS1123_LABEL_MAX);
	return -EINVAL;
}
