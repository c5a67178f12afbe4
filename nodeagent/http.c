/* http: the agent's operations endpoints (/healthz, /readyz, /metrics,
 * /status) on libmicrohttpd; see http.h.  The listening socket is created
 * and bound here, not by libmicrohttpd, so that a bind failure comes back as
 * its exact errno and port 0 can be resolved to the port picked. */
#include "config.h"

#include "nodeagent/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "lib/log.h"
#include "lib/util.h"
#include "nodeagent/metrics.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

#define CT_TEXT    "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_JSON    "application/json"

struct http_server {
	struct http_options opts;
	char *listen;
	struct MHD_Daemon *daemon;
	uint16_t port;
};

/* ---------------------------------------------------------------- address */

/* The one reader of a listen address: the conf check (agent_conf.c) calls
 * it too, so that what --config-test accepts is what http_start() binds.
 * Every message names the whole text, so that it reads the same after
 * "FILE:LINE: http.listen: " and after "cannot serve HTTP on ...". */
static int parse_port(const char *s, const char *whole, uint16_t *ret, char *err, size_t errlen)
{
	unsigned long v = 0;

	if (!*s) {
		errbuf_set(err, errlen, "'%s': the port is missing (HOST:PORT)", whole);
		return -EINVAL;
	}
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9') {
			errbuf_set(err, errlen, "'%s': port '%s' is not a number", whole, s);
			return -EINVAL;
		}
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > 65535) {
			errbuf_set(err, errlen, "'%s': port '%s' is not in 0..65535", whole, s);
			return -EINVAL;
		}
	}
	*ret = (uint16_t)v;
	return 0;
}

static int parse_ipv6(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, char *err,
                      size_t errlen)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	const char *close = strchr(s, ']');
	char host[INET6_ADDRSTRLEN + 1];
	uint16_t port;
	size_t hlen;
	int r;

	if (!close) {
		errbuf_set(err, errlen, "'%s': missing ']' after the IPv6 address", s);
		return -EINVAL;
	}
	if (close[1] != ':') {
		errbuf_set(err, errlen, "'%s': want ':PORT' after ']' (e.g. [::1]:9464)", s);
		return -EINVAL;
	}
	hlen = (size_t)(close - s - 1);
	if (hlen >= sizeof(host)) {
		errbuf_set(err, errlen, "'%s': '%.*s' is not an IPv6 address", s, (int)hlen, s + 1);
		return -EINVAL;
	}
	memcpy(host, s + 1, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1) {
		errbuf_set(err, errlen, "'%s': '%s' is not an IPv6 address", s, host);
		return -EINVAL;
	}
	r = parse_port(close + 2, s, &port, err, errlen);
	if (r < 0)
		return r;
	sin6.sin6_port = htons(port);
	memset(ret, 0, sizeof(*ret));
	memcpy(ret, &sin6, sizeof(sin6));
	*ret_len = sizeof(sin6);
	return 0;
}

int http_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, char *err,
                      size_t errlen)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	char host[INET_ADDRSTRLEN + 1];
	const char *colon;
	uint16_t port;
	size_t hlen;
	int r;

	if (!s || !*s) {
		errbuf_set(err, errlen, "the listen address is empty (want HOST:PORT, e.g. %s)",
		           "0.0.0.0:9464");
		return -EINVAL;
	}
	if (s[0] == '[')
		return parse_ipv6(s, ret, ret_len, err, errlen);

	colon = strrchr(s, ':');
	if (!colon) {
		errbuf_set(err, errlen, "'%s' is not HOST:PORT (e.g. 0.0.0.0:9464 or [::1]:9464)",
		           s);
		return -EINVAL;
	}
	if (strchr(s, ':') != colon) {
		errbuf_set(err, errlen, "'%s': an IPv6 address needs brackets, e.g. [::1]:9464", s);
		return -EINVAL;
	}
	hlen = (size_t)(colon - s);
	if (hlen == 0 || (hlen == 1 && s[0] == '*')) {
		sin.sin_addr.s_addr = htonl(INADDR_ANY);
	} else if (hlen == strlen("localhost") && strncmp(s, "localhost", hlen) == 0) {
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (strspn(s, "0123456789.") < hlen) {
		/* A name: resolving it could block the start, and a name
		 * with several addresses would leave the choice to chance. */
		errbuf_set(err, errlen,
		           "'%s': host '%.*s' is not resolved (give an IPv4 address, [IPV6], "
		           "'localhost', '*' or nothing before ':PORT')",
		           s, (int)hlen, s);
		return -EINVAL;
	} else {
		if (hlen >= sizeof(host)) {
			errbuf_set(err, errlen, "'%s': '%.*s' is not an IPv4 address", s, (int)hlen,
			           s);
			return -EINVAL;
		}
		memcpy(host, s, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
			errbuf_set(err, errlen, "'%s': '%s' is not an IPv4 address", s, host);
			return -EINVAL;
		}
	}
	r = parse_port(colon + 1, s, &port, err, errlen);
	if (r < 0)
		return r;
	sin.sin_port = htons(port);
	memset(ret, 0, sizeof(*ret));
	memcpy(ret, &sin, sizeof(sin));
	*ret_len = sizeof(sin);
	return 0;
}

/* ---------------------------------------------------------------- serving */

static mhd_result respond(struct MHD_Connection *conn, unsigned code, const char *type, char *body,
                          size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *resp;
	mhd_result ret;

	resp = MHD_create_response_from_buffer(len, body, mode);
	if (!resp) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		(void)MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return ret;
}

static mhd_result respond_text(struct MHD_Connection *conn, unsigned code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static mhd_result respond_text(struct MHD_Connection *conn, unsigned code, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(buf))
		n = (int)sizeof(buf) - 1;
	return respond(conn, code, CT_TEXT, buf, (size_t)n, MHD_RESPMEM_MUST_COPY);
}

static mhd_result serve_check(struct http_server *s, struct MHD_Connection *conn,
                              http_check_fn check, const char *what)
{
	char reason[256] = "";

	if (!check || check(s->opts.userdata, reason, sizeof(reason)))
		return respond_text(conn, MHD_HTTP_OK, "ok\n");
	return respond_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not %s: %s\n", what,
	                    *reason ? reason : "no reason given");
}

static mhd_result serve_metrics(struct http_server *s, struct MHD_Connection *conn)
{
	char *text = NULL;
	size_t len = 0;

	if (!s->opts.metrics)
		return respond_text(conn, MHD_HTTP_NOT_FOUND, "no metrics in this process\n");
	if (metrics_render(s->opts.metrics, &text, &len) < 0)
		return respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	return respond(conn, MHD_HTTP_OK, CT_METRICS, text, len, MHD_RESPMEM_MUST_FREE);
}

static mhd_result serve_status(struct http_server *s, struct MHD_Connection *conn)
{
	char err[256] = "", *text = NULL;
	cJSON *obj = NULL;
	mhd_result ret;
	int r;

	if (!s->opts.status)
		return respond_text(conn, MHD_HTTP_NOT_FOUND, "no status in this process\n");
	obj = cJSON_CreateObject();
	if (!obj || !cJSON_AddNumberToObject(obj, "version", HTTP_STATUS_VERSION)) {
		ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		goto out;
	}
	r = s->opts.status(s->opts.userdata, obj, err, sizeof(err));
	if (r < 0) {
		ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "status failed: %s\n",
		                   *err ? err : strerror(-r));
		goto out;
	}
	/* The callback may have replaced "version"; the schema's wins. */
	while (cJSON_GetObjectItem(obj, "version"))
		cJSON_DeleteItemFromObject(obj, "version");
	if (!cJSON_AddNumberToObject(obj, "version", HTTP_STATUS_VERSION)) {
		ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		goto out;
	}
	text = cJSON_Print(obj);
	if (!text) {
		ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		goto out;
	}
	/* cJSON allocates with malloc() unless hooks were installed (they are
	 * not in kubefence), so MHD may free() it; append the final newline by
	 * copying instead of assuming spare room. */
	size_t len = strlen(text);
	char *body = malloc(len + 2);
	if (!body) {
		ret = respond_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
		goto out;
	}
	memcpy(body, text, len);
	body[len] = '\n';
	body[len + 1] = '\0';
	ret = respond(conn, MHD_HTTP_OK, CT_JSON, body, len + 1, MHD_RESPMEM_MUST_FREE);
out:
	cJSON_free(text);
	cJSON_Delete(obj);
	return ret;
}

static mhd_result handle(void *cls, struct MHD_Connection *conn, const char *url,
                         const char *method, const char *version, const char *upload_data,
                         size_t *upload_data_size, void **con_cls)
{
	struct http_server *s = cls;

	/* Requests with a body are refused below on their first call; MHD then
	 * discards the body and closes the connection. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method %s not allowed\n",
		                    method);
	if (strcmp(url, "/healthz") == 0)
		return serve_check(s, conn, s->opts.healthy, "healthy");
	if (strcmp(url, "/readyz") == 0)
		return serve_check(s, conn, s->opts.ready, "ready");
	if (strcmp(url, "/metrics") == 0)
		return serve_metrics(s, conn);
	if (strcmp(url, "/status") == 0)
		return serve_status(s, conn);
	return respond_text(conn, MHD_HTTP_NOT_FOUND,
	                    "not found; try /healthz, /readyz, /metrics or /status\n");
}

/* libmicrohttpd's own complaints (a failed accept(), a client error) once
 * serving; they do not stop the server. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	if (log_max_level < LOG_LEVEL_WARNING)
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warning("ops endpoint '%s': %s", ((struct http_server *)cls)->listen, buf);
}

static int listen_socket(const struct sockaddr_storage *ss, socklen_t sslen, int *ret_fd,
                         uint16_t *ret_port, char *err, size_t errlen, const char *listen_s)
{
	struct sockaddr_storage bound;
	socklen_t blen = sizeof(bound);
	int fd = -1, one = 1, r;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		errbuf_set(err, errlen, "listen address '%s': socket: %s", listen_s, strerror(-r));
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, sslen) < 0 || listen(fd, 64) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "listen address '%s': %s", listen_s, strerror(-r));
		goto out;
	}
	if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
		r = -errno;
		errbuf_set(err, errlen, "listen address '%s': getsockname: %s", listen_s,
		           strerror(-r));
		goto out;
	}
	*ret_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
	                                              : ((struct sockaddr_in *)&bound)->sin_port);
	*ret_fd = fd;
	fd = -1;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	return r;
}

int http_start(const struct http_options *o, struct http_server **ret, char *err, size_t errlen)
{
	struct http_server *s = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen;
	unsigned flags;
	int fd = -1, r;

	r = http_parse_listen(o->listen, &ss, &sslen, err, errlen);
	if (r < 0)
		return r;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->opts = *o;
	s->listen = strdup(o->listen);
	if (!s->listen) {
		r = -ENOMEM;
		goto out;
	}
	s->opts.listen = s->listen;
	r = listen_socket(&ss, sslen, &fd, &s->port, err, errlen, s->listen);
	if (r < 0)
		goto out;

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
#if MHD_VERSION >= 0x00095300
	flags |= MHD_USE_POLL;
#endif
	/* The logger must be the first option to catch every message. */
	s->daemon = MHD_start_daemon(
	        flags, s->port, NULL, NULL, handle, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
	        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
	        (unsigned)HTTP_CONNECTION_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
	        (unsigned)HTTP_CONNECTIONS_MAX, MHD_OPTION_END);
	if (!s->daemon) {
		/* Whether libmicrohttpd closed fd on this path differs between
		 * versions; leaking one descriptor at start-up is the safe side
		 * of a double close. */
		fd = -1;
		r = -EIO;
		errbuf_set(err, errlen, "listen address '%s': libmicrohttpd did not start",
		           s->listen);
		goto out;
	}
	fd = -1; /* the daemon's now; closed by MHD_stop_daemon() */
	*ret = s;
	s = NULL;
out:
	if (fd >= 0)
		close(fd);
	if (s) {
		free(s->listen);
		free(s);
	}
	return r;
}

uint16_t http_port(const struct http_server *s)
{
	return s->port;
}

struct http_server *http_stop(struct http_server *s)
{
	if (!s)
		return NULL;
	if (s->daemon)
		MHD_stop_daemon(s->daemon);
	free(s->listen);
	free(s);
	return NULL;
}

int http_status_step(cJSON *steps, const char *step, int64_t at_ms, int64_t duration_ms,
                     const char *detail)
{
	cJSON *o = cJSON_CreateObject();

	if (!o || !cJSON_AddStringToObject(o, "step", step) ||
	    !cJSON_AddNumberToObject(o, "at_ms", (double)at_ms) ||
	    !cJSON_AddNumberToObject(o, "duration_ms", (double)duration_ms) ||
	    (detail && !cJSON_AddStringToObject(o, "detail", detail)) ||
	    !cJSON_AddItemToArray(steps, o)) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	return 0;
}

/* ------------------------------------------------------------ settings */

/* HOST:PORT to listen on, or empty for none.  Read by the HTTP server's
 * own parser, so that a value accepted here is one the server binds; the
 * only rule added is that a conf file names its port: port 0 would bind one
 * picked at random, which no scraper or probe could find. */
static int validate_listen(const union conf_value *v, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int r;

	if (v->str[0] == '\0')
		return 0;
	r = http_parse_listen(v->str, &ss, &len, err, errlen);
	if (r < 0)
		return r;
	if ((ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_port == 0) ||
	    (ss.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&ss)->sin6_port == 0)) {
		errbuf_set(err, errlen,
		           "'%s': port 0 would listen on a port picked at random; give one in "
		           "1..65535",
		           v->str);
		return -EINVAL;
	}
	return 0;
}

const struct conf_key http_conf_keys[] = {
        {.name = "http.listen",
         .type = CONF_STRING,
         .def = "0.0.0.0:9464",
         .offset = offsetof(struct http_conf, listen),
         .validate = validate_listen,
         .help = "Address of /healthz, /readyz, /metrics and /status: `IPV4:PORT`, "
                 "`[IPV6]:PORT`, `localhost:PORT`, or `:PORT` (every IPv4 address); PORT "
                 "1..65535; host names are not resolved. Empty: no HTTP endpoint."},
};

const size_t http_conf_n_keys = ELEMENTSOF(http_conf_keys);
