/* probe: health probes for services that do not connect (see probe.h). */
#include "config.h"

#include "nodeagent/probe.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lib/util.h"

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

int probe_parse(const char *url, char *err, size_t errlen)
{
	const char *hp, *colon, *end;
	char *num_end;
	long port;

	if (has_prefix(url, "tcp://"))
		hp = url + 6;
	else if (has_prefix(url, "http://"))
		hp = url + 7;
	else {
		errbuf_set(err, errlen, "'%s' is not tcp://HOST:PORT or http://HOST:PORT/PATH",
		           url);
		return -EINVAL;
	}
	end = strchr(hp, '/');
	if (!end)
		end = hp + strlen(hp);
	if (has_prefix(url, "tcp://") && *end) {
		errbuf_set(err, errlen, "'%s': a tcp probe has no path", url);
		return -EINVAL;
	}
	colon = NULL;
	for (const char *p = hp; p < end; p++)
		if (*p == ':')
			colon = p;
	if (!colon || colon == hp) {
		errbuf_set(err, errlen, "'%s' lacks HOST:PORT", url);
		return -EINVAL;
	}
	port = strtol(colon + 1, &num_end, 10);
	if (num_end != end || port < 1 || port > 65535) {
		errbuf_set(err, errlen, "'%s': the port is not a number in 1..65535", url);
		return -EINVAL;
	}
	return 0;
}

static size_t discard(char *ptr, size_t size, size_t n, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * n;
}

int probe_check(const char *url, long timeout_ms, char *err, size_t errlen)
{
	bool tcp = has_prefix(url, "tcp://");
	char curl_url[600];
	CURL *c;
	CURLcode cc;
	long status = 0;
	int r;

	r = probe_parse(url, err, errlen);
	if (r < 0)
		return r;
	/* curl's connect-only mode on an http:// URL is a plain TCP connect. */
	snprintf(curl_url, sizeof(curl_url), "http://%s", tcp ? url + 6 : url + 7);
	c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_URL, curl_url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	if (tcp)
		curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK && !tcp)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);

	if (cc == CURLE_OPERATION_TIMEDOUT) {
		errbuf_set(err, errlen, "%s: no answer within %ld ms", url, timeout_ms);
		return -ETIMEDOUT;
	}
	if (cc == CURLE_COULDNT_CONNECT) {
		errbuf_set(err, errlen, "%s: connection refused", url);
		return -ECONNREFUSED;
	}
	if (cc != CURLE_OK) {
		errbuf_set(err, errlen, "%s: %s", url, curl_easy_strerror(cc));
		return -EIO;
	}
	if (!tcp && (status < 200 || status > 299)) {
		errbuf_set(err, errlen, "%s: HTTP %ld", url, status);
		return -EIO;
	}
	return 0;
}
