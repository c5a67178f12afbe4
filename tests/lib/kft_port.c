#include "config.h"

#include "tests/lib/kft_port.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PORT_LOW 20000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char given[65536 / 8];

/* The first port of the ephemeral range (32768 when it cannot be read). */
static int ephemeral_low(void)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int lo = 32768, hi;

	if (f) {
		if (fscanf(f, "%d %d", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	return lo > PORT_LOW + 1000 && lo <= 65535 ? lo : 32768;
}

static bool bindable(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

int kft_free_port(void)
{
	static unsigned seed;
	int hi = ephemeral_low() - 1, port = -1;

	pthread_mutex_lock(&mu);
	if (!seed)
		seed = (unsigned)time(NULL) ^ (unsigned)getpid() << 8;
	for (int i = 0; i < 1000; i++) {
		int p = PORT_LOW + (int)(rand_r(&seed) % (unsigned)(hi - PORT_LOW + 1));

		if (given[p / 8] & (1u << (p % 8)) || !bindable(p))
			continue;
		given[p / 8] |= (unsigned char)(1u << (p % 8));
		port = p;
		break;
	}
	pthread_mutex_unlock(&mu);
	if (port < 0)
		errno = EADDRINUSE;
	return port;
}
