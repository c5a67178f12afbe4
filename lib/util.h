/* util: small helpers shared by every module. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* Write a formatted message into the caller-supplied error buffer `err`
 * (of `errlen` bytes); a NULL buffer or zero length is allowed and ignored.
 * This is how functions hand detail for the log to their caller. */
void errbuf_set(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Copy at most n-1 bytes of src into dst and NUL-terminate.  Returns
 * -ENAMETOOLONG when src did not fit (dst then holds the truncated copy). */
int str_copy(char *dst, size_t n, const char *src);

/* Send all `len` bytes of buf on the socket fd before the monotonic
 * `deadline` (usec), waiting with poll() while the socket is full; never
 * raises SIGPIPE.  Returns 0, -ETIMEDOUT, or the -errno of send(). */
int fd_send_all(int fd, const void *buf, size_t len, int64_t deadline);

/* free() that returns NULL, for `p = freep(p)`. */
static inline void *mfree(void *p)
{
	free(p);
	return NULL;
}
