/* fp_http: the HTTP/1.1 message heads the fault proxy has to understand.
 *
 * The proxy forwards heads byte for byte; it parses them only to learn the
 * method and target (for the rules), how the body is framed (RFC 9112 6:
 * Content-Length, chunked, or until close) and whether the connection stays
 * open afterwards.  Rewriting is limited to what the faults need: a new
 * Content-Length, "Connection: close".  Pure functions, no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fp_body {
	FP_BODY_NONE,
	FP_BODY_LENGTH,
	FP_BODY_CHUNKED,
	FP_BODY_CLOSE, /* responses only: the body ends when the server closes */
};

struct fp_http_head {
	char method[24]; /* requests */
	char *target;    /* requests: malloc'ed request target, query included */
	int status;      /* responses */
	int minor;       /* HTTP/1.minor */
	enum fp_body body;
	uint64_t length; /* FP_BODY_LENGTH */
	bool close;      /* the connection ends after this message */
	bool chunked_te; /* Transfer-Encoding: chunked was present */
};

/* Parse a request head (as read by fp_conn_read_head()).  Returns 0, or
 * -EBADMSG with the reason in err (a malformed line, a conflicting or bad
 * Content-Length, a Transfer-Encoding other than chunked).  Free h->target
 * with fp_http_head_clear(). */
int fp_http_parse_request(const char *raw, size_t len, struct fp_http_head *h, char *err,
                          size_t errlen);

/* Parse a response head to a request of `method`: HEAD and 1xx/204/304 have
 * no body.  Returns 0 or -EBADMSG with the reason in err. */
int fp_http_parse_response(const char *raw, size_t len, const char *method, struct fp_http_head *h,
                           char *err, size_t errlen);

void fp_http_head_clear(struct fp_http_head *h);

/* A copy of the head `raw` with Content-Length and Transfer-Encoding
 * removed and "Content-Length: length" (and "Connection: close" when
 * `close`) added before its empty line.  Returns 0 and a NUL-terminated
 * malloc'ed *ret of *ret_len bytes, or -ENOMEM. */
int fp_http_reframe(const char *raw, size_t len, uint64_t length, bool close, char **ret,
                    size_t *ret_len);

/* The reason phrase of a status ("Service Unavailable"), or "Unknown". */
const char *fp_http_phrase(int status);
