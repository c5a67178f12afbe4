/* fp_http: see fp_http.h. */
#include "config.h"

#include "tests/proxy/fp_http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/util.h"

/* One line of the head: [s, s + len) without its CR LF. */
struct line {
	const char *s;
	size_t len;
};

/* The line at *pos, advancing *pos past it; false at the end of raw. */
static bool next_line(const char *raw, size_t len, size_t *pos, struct line *l)
{
	const char *nl;

	if (*pos >= len)
		return false;
	l->s = raw + *pos;
	nl = memchr(l->s, '\n', len - *pos);
	l->len = nl ? (size_t)(nl - l->s) : len - *pos;
	*pos += l->len + (nl ? 1 : 0);
	if (l->len > 0 && l->s[l->len - 1] == '\r')
		l->len--;
	return true;
}

static bool token_in_list(const char *v, size_t vlen, const char *token)
{
	size_t tl = strlen(token);
	size_t i = 0;

	while (i < vlen) {
		size_t j;

		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		j = i;
		while (j < vlen && v[j] != ',')
			j++;
		size_t e = j;
		while (e > i && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e - i == tl && strncasecmp(v + i, token, tl) == 0)
			return true;
		i = j;
	}
	return false;
}

/* Whether the last coding of a Transfer-Encoding value is chunked. */
static bool last_coding_chunked(const char *v, size_t vlen)
{
	const char *comma = NULL;

	for (size_t i = 0; i < vlen; i++)
		if (v[i] == ',')
			comma = v + i;
	if (comma) {
		vlen -= (size_t)(comma + 1 - v);
		v = comma + 1;
	}
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	return vlen == 7 && strncasecmp(v, "chunked", 7) == 0;
}

/* The header fields after the start line: framing and connection. */
static int parse_fields(const char *raw, size_t len, size_t pos, bool request,
                        struct fp_http_head *h, char *err, size_t errlen)
{
	bool have_cl = false, have_te = false, te_chunked = false, keep_alive = false;
	bool conn_close = false;
	uint64_t cl = 0;
	struct line l;

	while (next_line(raw, len, &pos, &l)) {
		const char *colon, *v;
		size_t nlen, vlen;

		if (l.len == 0)
			break;
		if (l.s[0] == ' ' || l.s[0] == '\t') {
			errbuf_set(err, errlen, "obsolete line folding in a header");
			return -EBADMSG;
		}
		colon = memchr(l.s, ':', l.len);
		if (!colon || colon == l.s) {
			errbuf_set(err, errlen, "header line without a name: '%.*s'",
			           (int)(l.len > 60 ? 60 : l.len), l.s);
			return -EBADMSG;
		}
		nlen = (size_t)(colon - l.s);
		for (size_t i = 0; i < nlen; i++)
			if (isspace((unsigned char)l.s[i])) {
				errbuf_set(err, errlen, "white space in a header name");
				return -EBADMSG;
			}
		v = colon + 1;
		vlen = l.len - nlen - 1;
		while (vlen && (*v == ' ' || *v == '\t'))
			v++, vlen--;
		while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
			vlen--;

		if (nlen == 14 && strncasecmp(l.s, "Content-Length", 14) == 0) {
			uint64_t n = 0;

			if (vlen == 0 || vlen > 18) {
				errbuf_set(err, errlen, "bad Content-Length");
				return -EBADMSG;
			}
			for (size_t i = 0; i < vlen; i++) {
				if (!isdigit((unsigned char)v[i])) {
					errbuf_set(err, errlen, "bad Content-Length");
					return -EBADMSG;
				}
				n = n * 10 + (uint64_t)(v[i] - '0');
			}
			if (have_cl && n != cl) {
				errbuf_set(err, errlen, "conflicting Content-Length headers");
				return -EBADMSG;
			}
			have_cl = true;
			cl = n;
		} else if (nlen == 17 && strncasecmp(l.s, "Transfer-Encoding", 17) == 0) {
			have_te = true;
			te_chunked = last_coding_chunked(v, vlen);
		} else if (nlen == 10 && strncasecmp(l.s, "Connection", 10) == 0) {
			conn_close |= token_in_list(v, vlen, "close");
			keep_alive |= token_in_list(v, vlen, "keep-alive");
		}
	}

	h->close = conn_close || (h->minor == 0 && !keep_alive);
	h->chunked_te = have_te && te_chunked;
	if (have_te) {
		/* RFC 9112 6.1: a request whose last coding is not chunked
		 * cannot be framed, and with Content-Length too it is a
		 * smuggling attempt; a response is then read until close. */
		if (request && (!te_chunked || have_cl)) {
			errbuf_set(err, errlen, "Transfer-Encoding without a final chunked%s",
			           have_cl ? ", or with Content-Length" : "");
			return -EBADMSG;
		}
		h->body = te_chunked ? FP_BODY_CHUNKED : FP_BODY_CLOSE;
		if (!te_chunked)
			h->close = true;
	} else if (have_cl) {
		h->body = cl ? FP_BODY_LENGTH : FP_BODY_NONE;
		h->length = cl;
	} else if (request) {
		h->body = FP_BODY_NONE;
	} else {
		h->body = FP_BODY_CLOSE;
		h->close = true;
	}
	return 0;
}

static int parse_version(const char *s, size_t len, int *minor)
{
	if (len != 8 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1'))
		return -EBADMSG;
	*minor = s[7] - '0';
	return 0;
}

int fp_http_parse_request(const char *raw, size_t len, struct fp_http_head *h, char *err,
                          size_t errlen)
{
	const char *sp1, *sp2;
	size_t pos = 0;
	struct line l;

	memset(h, 0, sizeof(*h));
	if (!next_line(raw, len, &pos, &l) || l.len == 0)
		goto bad;
	sp1 = memchr(l.s, ' ', l.len);
	if (!sp1)
		goto bad;
	sp2 = memchr(sp1 + 1, ' ', l.len - (size_t)(sp1 + 1 - l.s));
	if (!sp2 || sp1 == l.s || sp2 == sp1 + 1 || (size_t)(sp1 - l.s) >= sizeof(h->method))
		goto bad;
	for (const char *p = l.s; p < sp1; p++)
		if (!isupper((unsigned char)*p))
			goto bad;
	if (parse_version(sp2 + 1, l.len - (size_t)(sp2 + 1 - l.s), &h->minor) < 0)
		goto bad;
	memcpy(h->method, l.s, (size_t)(sp1 - l.s));
	h->method[sp1 - l.s] = '\0';
	h->target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	if (!h->target)
		return -ENOMEM;
	return parse_fields(raw, len, pos, true, h, err, errlen);
bad:
	errbuf_set(err, errlen, "malformed request line");
	return -EBADMSG;
}

int fp_http_parse_response(const char *raw, size_t len, const char *method, struct fp_http_head *h,
                           char *err, size_t errlen)
{
	size_t pos = 0;
	struct line l;
	int r;

	memset(h, 0, sizeof(*h));
	if (!next_line(raw, len, &pos, &l) || l.len < 12 || l.s[8] != ' ' ||
	    parse_version(l.s, 8, &h->minor) < 0 || !isdigit((unsigned char)l.s[9]) ||
	    !isdigit((unsigned char)l.s[10]) || !isdigit((unsigned char)l.s[11]) ||
	    (l.len > 12 && l.s[12] != ' ')) {
		errbuf_set(err, errlen, "malformed status line");
		return -EBADMSG;
	}
	h->status = (l.s[9] - '0') * 100 + (l.s[10] - '0') * 10 + (l.s[11] - '0');
	r = parse_fields(raw, len, pos, false, h, err, errlen);
	if (r < 0)
		return r;
	if (strcmp(method, "HEAD") == 0 || h->status / 100 == 1 || h->status == 204 ||
	    h->status == 304) {
		h->body = FP_BODY_NONE;
		h->length = 0;
	}
	return 0;
}

void fp_http_head_clear(struct fp_http_head *h)
{
	free(h->target);
	h->target = NULL;
}

int fp_http_reframe(const char *raw, size_t len, uint64_t length, bool close, char **ret,
                    size_t *ret_len)
{
	size_t pos = 0, n = 0, cap = 2 * len + 96; /* LF lines become CR LF */
	char *out = malloc(cap);
	bool first = true;
	struct line l;

	if (!out)
		return -ENOMEM;
	while (next_line(raw, len, &pos, &l)) {
		if (l.len == 0)
			break;
		if (!first && ((l.len >= 15 && strncasecmp(l.s, "Content-Length:", 15) == 0) ||
		               (l.len >= 18 && strncasecmp(l.s, "Transfer-Encoding:", 18) == 0) ||
		               (close && l.len >= 11 && strncasecmp(l.s, "Connection:", 11) == 0)))
			continue;
		first = false;
		memcpy(out + n, l.s, l.len);
		n += l.len;
		out[n++] = '\r';
		out[n++] = '\n';
	}
	n += (size_t)snprintf(out + n, cap - n, "Content-Length: %llu\r\n%s\r\n",
	                      (unsigned long long)length, close ? "Connection: close\r\n" : "");
	*ret = out;
	*ret_len = n;
	return 0;
}

const char *fp_http_phrase(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 408:
		return "Request Timeout";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "Payload Too Large";
	case 422:
		return "Unprocessable Entity";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Unknown";
	}
}
