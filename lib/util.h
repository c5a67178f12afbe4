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

struct sockaddr;

/* Wait until fd is ready for `events` (POLLIN, POLLOUT) or the monotonic
 * `deadline` (usec) passes.  Returns 0, -ETIMEDOUT, or the -errno of poll(). */
int fd_wait(int fd, short events, int64_t deadline);

/* Connect a new non-blocking TCP socket (TCP_NODELAY, close-on-exec) to sa
 * before the monotonic `deadline`.  Returns 0 and *ret_fd, -ETIMEDOUT, or
 * the -errno of the connect (e.g. -ECONNREFUSED); no fd is left open on
 * failure. */
int tcp_connect(const struct sockaddr *sa, unsigned sa_len, int64_t deadline, int *ret_fd);

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
