/* ctl_status: `kubefencectl status` — ask a running agent for its view
 * (GET /status on its operations endpoint, see http.h) and print it for an
 * operator: who holds the Lease at which epoch, this agent's role, the local
 * service, the last failover step by step and the recent fence runs (newest
 * first, as the agent sends them).  With
 * --json the agent's answer is printed as it came.
 *
 * Exit codes (see ctl.h): 0 the agent answered; 2 bad usage; 3 the agent is
 * unreachable or its answer is not a status (wrong port, not an agent). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "lib/util.h"
#include "nodeagent/ctl.h"
#include "nodeagent/http.h"

#define DEFAULT_AGENT      "127.0.0.1:9464"
#define DEFAULT_TIMEOUT_MS 5000L
#define BODY_MAX           (4u * 1024 * 1024)

struct body {
	char *data;
	size_t len;
};

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: kubefencectl status [--agent HOST:PORT] [--json] [--timeout-ms MS]\n"
	        "\n"
	        "Show a running agent's view: Lease holder and epoch, role, local service,\n"
	        "the last failover's timeline and the recent fence runs.\n"
	        "\n"
	        "  --agent HOST:PORT  the agent's operations endpoint (http.listen; default %s)\n"
	        "  --json             print the agent's JSON as it came\n"
	        "  --timeout-ms MS    deadline of the request (default %ld)\n"
	        "\n"
	        "Exit: 0 ok, 2 bad usage, 3 agent unreachable or not an agent.\n",
	        DEFAULT_AGENT, DEFAULT_TIMEOUT_MS);
}

/* HOST:PORT or [IPV6]:PORT, PORT 1..65535; builds the URL. */
static int agent_url(const char *agent, char *url, size_t len)
{
	const char *colon, *host_end;
	char *end;
	long port;

	if (agent[0] == '[') {
		host_end = strchr(agent, ']');
		if (!host_end || host_end[1] != ':')
			return -EINVAL;
		colon = host_end + 1;
	} else {
		colon = strrchr(agent, ':');
		if (!colon || strchr(agent, ':') != colon)
			return -EINVAL;
		host_end = colon;
	}
	if (host_end == agent || strpbrk(agent, "/?#@ \t"))
		return -EINVAL;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
		return -EINVAL;
	if ((size_t)snprintf(url, len, "http://%s/status", agent) >= len)
		return -EINVAL;
	return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct body *b = userdata;
	size_t n = size * nmemb;
	char *p;

	if (b->len + n > BODY_MAX)
		return 0; /* aborts the transfer */
	p = realloc(b->data, b->len + n + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, ptr, n);
	b->len += n;
	p[b->len] = '\0';
	b->data = p;
	return n;
}

/* GET url within timeout_ms.  Returns 0 with the body, or -errno with the
 * reason in err. */
static int fetch(const char *url, long timeout_ms, struct body *ret, char *err, size_t errlen)
{
	char cerr[CURL_ERROR_SIZE] = "";
	struct body b = {0};
	CURL *h = NULL;
	CURLcode cc;
	long code = 0;
	int r;

	h = curl_easy_init();
	if (!h) {
		errbuf_set(err, errlen, "cannot initialise libcurl");
		return -ENOMEM;
	}
	(void)curl_easy_setopt(h, CURLOPT_URL, url);
	(void)curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	(void)curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	(void)curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	(void)curl_easy_setopt(h, CURLOPT_NOPROXY, "*"); /* an agent is never behind a proxy */
	(void)curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	(void)curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	(void)curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		r = cc == CURLE_OPERATION_TIMEDOUT     ? -ETIMEDOUT
		    : cc == CURLE_COULDNT_CONNECT      ? -ECONNREFUSED
		    : cc == CURLE_WRITE_ERROR          ? -EFBIG
		    : cc == CURLE_COULDNT_RESOLVE_HOST ? -EHOSTUNREACH
		                                       : -EIO;
		errbuf_set(err, errlen, "%s", *cerr ? cerr : curl_easy_strerror(cc));
		goto out;
	}
	(void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (code != 200) {
		size_t n = b.len;

		while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == '\r'))
			n--;
		errbuf_set(err, errlen, "answered HTTP %ld%s%.*s", code, n ? ": " : "",
		           (int)(n > 200 ? 200 : n), b.data ? b.data : "");
		r = -EPROTO;
		goto out;
	}
	*ret = b;
	b.data = NULL;
	r = 0;
out:
	free(b.data);
	curl_easy_cleanup(h);
	return r;
}

static const char *str_of(const cJSON *o, const char *key, const char *dflt)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));

	return s ? s : dflt;
}

static bool num_of(const cJSON *o, const char *key, double *ret)
{
	const cJSON *v = cJSON_GetObjectItem(o, key);

	if (!cJSON_IsNumber(v))
		return false;
	*ret = v->valuedouble;
	return true;
}

static void print_ms(const char *label, const cJSON *o, const char *key)
{
	double v;

	if (num_of(o, key, &v))
		printf("%-14s %.0f ms\n", label, v);
}

/* One line per step: offset from the start, name, duration, detail. */
static void print_steps(const cJSON *steps, const char *indent)
{
	const cJSON *st;
	char at_s[32];

	cJSON_ArrayForEach(st, steps)
	{
		double at = 0, dur = 0;
		const char *detail = str_of(st, "detail", NULL);

		(void)num_of(st, "at_ms", &at);
		(void)num_of(st, "duration_ms", &dur);
		snprintf(at_s, sizeof(at_s), "+%.0f ms", at);
		printf("%s%-10s %-22s %7.0f ms%s%s\n", indent, at_s, str_of(st, "step", "?"), dur,
		       detail ? "  " : "", detail ? detail : "");
	}
}

static const char *ok_word(const cJSON *o)
{
	const cJSON *ok = cJSON_GetObjectItem(o, "ok");

	return cJSON_IsBool(ok) ? (cJSON_IsTrue(ok) ? "ok" : "FAILED") : "?";
}

static void print_summary(const char *agent, const cJSON *st)
{
	const cJSON *svc = cJSON_GetObjectItem(st, "service");
	const cJSON *fo = cJSON_GetObjectItem(st, "last_failover");
	const cJSON *fences = cJSON_GetObjectItem(st, "fences");
	const cJSON *f;
	double v;

	printf("%-14s %s\n", "agent:", agent);
	printf("%-14s %s (identity %s)\n", "node:", str_of(st, "node", "?"),
	       str_of(st, "identity", str_of(st, "node", "?")));
	printf("%-14s %s\n", "role:", str_of(st, "role", "?"));
	printf("%-14s %s\n", "holder:", str_of(st, "holder", "(none)"));
	if (num_of(st, "epoch", &v))
		printf("%-14s %.0f\n", "epoch:", v);
	print_ms("lease age:", st, "lease_age_ms");
	if (cJSON_IsObject(svc)) {
		const cJSON *c = cJSON_GetObjectItem(svc, "connected");
		const char *detail = str_of(svc, "detail", NULL);

		printf("%-14s %s, %s%s%s\n", "service:", str_of(svc, "state", "?"),
		       cJSON_IsBool(c) ? (cJSON_IsTrue(c) ? "connected" : "NOT connected")
		                       : "connection unknown",
		       detail ? " - " : "", detail ? detail : "");
	}

	if (cJSON_IsObject(fo)) {
		printf("\nlast failover: %s -> %s, started %s, %s", str_of(fo, "from", "?"),
		       str_of(fo, "to", "?"), str_of(fo, "started_at", "?"), ok_word(fo));
		if (num_of(fo, "total_ms", &v))
			printf(", %.0f ms total", v);
		printf("\n");
		print_steps(cJSON_GetObjectItem(fo, "steps"), "  ");
	} else {
		printf("\nlast failover: none seen by this agent\n");
	}

	/* Printed in the agent's order, which http.h fixes: newest first. */
	if (cJSON_IsArray(fences) && cJSON_GetArraySize(fences) > 0) {
		printf("\nfence history (%d, newest first):\n", cJSON_GetArraySize(fences));
		cJSON_ArrayForEach(f, fences)
		{
			printf("  %s  %s fenced %s by %s", str_of(f, "started_at", "?"), ok_word(f),
			       str_of(f, "target", "?"), str_of(f, "method", "?"));
			if (num_of(f, "total_ms", &v))
				printf(", %.0f ms", v);
			printf("\n");
			print_steps(cJSON_GetObjectItem(f, "steps"), "    ");
		}
	} else {
		printf("\nfence history: none\n");
	}
}

int ctl_status_main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"agent", required_argument, NULL, 'a'},
	        {"json", no_argument, NULL, 'j'},
	        {"timeout-ms", required_argument, NULL, 't'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *agent = DEFAULT_AGENT;
	long timeout_ms = DEFAULT_TIMEOUT_MS;
	char url[512], err[512] = "", *end;
	struct body b = {0};
	cJSON *st = NULL;
	bool json = false;
	int c, r, rc;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			agent = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 't':
			errno = 0;
			timeout_ms = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || timeout_ms < 1 ||
			    timeout_ms > 600000) {
				fprintf(stderr,
				        "kubefencectl status: --timeout-ms '%s': want 1..600000\n",
				        optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "kubefencectl status: unknown or incomplete option '%s'\n",
			        argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kubefencectl status: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (agent_url(agent, url, sizeof(url)) < 0) {
		fprintf(stderr,
		        "kubefencectl status: --agent '%s': want HOST:PORT or [IPV6]:PORT "
		        "(port 1..65535)\n",
		        agent);
		return 2;
	}

	r = fetch(url, timeout_ms, &b, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr,
		        "kubefencectl status: agent at %s unreachable: %s\n"
		        "  (is kubefence-agent running there, with http.listen set to it?)\n",
		        agent, err);
		rc = 3;
		goto out;
	}
	st = cJSON_ParseWithLength(b.data, b.len);
	if (!cJSON_IsObject(st) || !cJSON_IsNumber(cJSON_GetObjectItem(st, "version"))) {
		fprintf(stderr,
		        "kubefencectl status: %s did not answer a kubefence status object\n", url);
		rc = 3;
		goto out;
	}
	if (json)
		fwrite(b.data, 1, b.len, stdout);
	else
		print_summary(agent, st);
	rc = 0;
out:
	cJSON_Delete(st);
	free(b.data);
	return rc;
}
