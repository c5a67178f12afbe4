/* kft_meta: the MetaService protocol's raw test client (see kft_meta.h). */
#include "config.h"

#include "tests/lib/kft_meta.h"

#include <check.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/clock.h"

int kft_meta_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

void kft_meta_open(struct kft_meta *r, int port)
{
	memset(r, 0, sizeof(*r));
	r->fd = kft_meta_connect(port);
	ck_assert_int_ge(r->fd, 0);
}

void kft_meta_close(struct kft_meta *r)
{
	if (r->fd >= 0)
		close(r->fd);
	pbuf_free(&r->in);
	r->fd = -1;
}

void kft_meta_send(struct kft_meta *r, const void *p, size_t n)
{
	ck_assert_int_eq(send(r->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

void kft_meta_request(struct kft_meta *r, enum proto_op op, const void *k, size_t kl, const void *v,
                      size_t vl)
{
	struct pbuf b = {0};

	ck_assert_int_eq(proto_encode_request(&b, op, k, kl, v, vl, 0), 0);
	kft_meta_send(r, b.data, b.len);
	pbuf_free(&b);
}

enum proto_resp_kind kft_meta_reply(struct kft_meta *r, struct proto_resp *u, struct pbuf *data)
{
	usec_t until = clock_mono_usec() + 10 * USEC_PER_SEC;
	struct proto_resp tmp;
	enum proto_resp_kind kind;

	if (!u)
		u = &tmp;
	for (;;) {
		int n = proto_parse_response(r->in.data, r->in.len, u);
		uint8_t buf[65536];
		ssize_t got;

		ck_assert_int_ge(n, 0);
		if (n > 0) {
			if (data) {
				data->len = 0;
				pbuf_append(data, u->data, u->len);
			}
			kind = u->kind;
			pbuf_consume(&r->in, (size_t)n);
			return kind;
		}
		struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
		usec_t left = until - clock_mono_usec();
		if (left <= 0 || poll(&pfd, 1, (int)(left / 1000) + 1) <= 0)
			return 0;
		got = read(r->fd, buf, sizeof(buf));
		if (got <= 0)
			return 0;
		pbuf_append(&r->in, buf, (size_t)got);
	}
}
