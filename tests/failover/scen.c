/* The scenario helpers of the failover test programs: scen.h. */
#include "config.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tests/failover/scen.h"
#include "tests/lib/kft_util.h"

void fo_fail(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ck_abort_msg("%s", buf);
	abort(); /* not reached */
}

double secs(usec_t d)
{
	return (double)d / USEC_PER_SEC;
}

bool wait_log(const char *path, int count, long ms, usec_t *ret_mono, const char *needle,
              const char *needle2)
{
	usec_t end = clock_mono_usec() + ms * USEC_PER_MSEC;

	for (;;) {
		if (kft_log_count(path, ret_mono, needle, needle2, NULL) >= count)
			return true;
		if (clock_mono_usec() >= end)
			return false;
		usleep(10000);
	}
}

void dump_all(struct scen *s)
{
	for (size_t i = 0; i < s->c.n; i++) {
		fo_dump(s->c.node[i].agent_log);
		fo_dump(s->c.node[i].metad_log);
	}
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	char **b = ud;
	size_t have = *b ? strlen(*b) : 0;
	char *nb = realloc(*b, have + sz * n + 1);

	if (!nb)
		return 0;
	memcpy(nb + have, p, sz * n);
	nb[have + sz * n] = '\0';
	*b = nb;
	return sz * n;
}

char *agent_http(struct scen *s, size_t i, const char *path, long *ret_code)
{
	char url[128], *body = NULL;
	CURL *h = curl_easy_init();

	ck_assert_ptr_nonnull(h);
	*ret_code = 0;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->c.node[i].http_port, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_code);
	curl_easy_cleanup(h);
	return body;
}

char *agent_get(struct scen *s, size_t i, const char *path)
{
	long code;
	char *body = agent_http(s, i, path, &code);

	ck_assert_msg(code, "GET %s of node %zu failed", path, i);
	ck_assert_msg(code == 200, "GET %s of node %zu: %ld", path, i, code);
	ck_assert_ptr_nonnull(body);
	return body;
}

double metric_of(struct scen *s, size_t i, const char *series)
{
	char *text = agent_get(s, i, "/metrics"), *p = text;
	size_t n = strlen(series);
	double v = -1;

	while ((p = strstr(p, series))) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			break;
		}
		p += n;
	}
	free(text);
	return v;
}

usec_t longest_pause(struct scen *s, int srv, usec_t from, usec_t to)
{
	usec_t last = from, worst = 0;

	pthread_mutex_lock(&s->w.mu);
	for (size_t k = 0; k < s->w.n_acks; k++) {
		const struct fo_ack *a = &s->w.acks[k];
		if (a->srv != srv || a->probe || a->acked < from || a->acked > to)
			continue;
		if (a->acked - last > worst)
			worst = a->acked - last;
		last = a->acked;
	}
	pthread_mutex_unlock(&s->w.mu);
	if (to - last > worst)
		worst = to - last;
	return worst;
}
