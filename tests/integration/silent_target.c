/* silent_target: a TCP listener on 127.0.0.1 that accepts connections and
 * never answers — the "target that hangs" of the deadline tests.
 *
 * Usage: silent_target PORTFILE.  Binds an ephemeral port, writes it to
 * PORTFILE, then accepts and holds connections until killed (by the test
 * that started it, by PID). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	FILE *f;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: silent_target PORTFILE\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
		fprintf(stderr, "silent_target: %s\n", strerror(errno));
		return 1;
	}
	f = fopen(argv[1], "w");
	if (!f || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0) {
		fprintf(stderr, "silent_target: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (;;) {
		/* accepted sockets are kept open (leaked on purpose) and never read */
		if (accept(fd, NULL, NULL) >= 0 || errno == EINTR)
			continue;
		if (errno != EMFILE)
			return 1;
		sleep(1);
	}
}
