/* kft_wire: the Check-free MetaService response reader (see kft_wire.h). */
#include "config.h"

#include "tests/lib/kft_wire.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/util.h"

int kft_wire_read_unit(int fd, uint8_t *buf, size_t cap, size_t *len, usec_t deadline,
                       struct proto_resp *ret)
{
	for (;;) {
		ssize_t k;
		int r = proto_parse_response(buf, *len, ret);

		if (r > 0)
			return r;
		if (r < 0 || *len == cap || fd_wait(fd, POLLIN, deadline) < 0)
			return -1;
		k = recv(fd, buf + *len, cap - *len, 0);
		if (k > 0)
			*len += (size_t)k;
		else if (k == 0 || (errno != EAGAIN && errno != EINTR))
			return -1;
	}
}

void kft_wire_consume(uint8_t *buf, size_t *len, size_t n)
{
	memmove(buf, buf + n, *len - n);
	*len -= n;
}
