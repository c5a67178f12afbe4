/* history: the append-only writer of operation histories (see history.h and
 * docs/history.md).
 *
 * A history is only worth checking if no record is torn or interleaved with
 * another, whatever the number of threads and processes appending to it, and
 * if the version line is there exactly once at the top of a new file.  So a
 * record is formatted completely in memory and handed to one write(2) on an
 * O_APPEND descriptor: the kernel appends each such write whole and at the
 * current end of the file.  The version line is written under an exclusive
 * flock(2) taken while the file is checked for emptiness, so two processes
 * opening a new file at once do not both write it.  The reader treats every
 * line starting with '#' as a comment, so a header that appears twice (a
 * file system without flock, files concatenated) is harmless. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/history.h"

#define HIST_HEADER    "# kfhistory 1\n"
#define HIST_TOKEN_MAX 1024
/* Eight fields: four tokens of at most HIST_TOKEN_MAX bytes, the op, two
 * 20-digit numbers, the result, the separators and the newline. */
#define HIST_LINE_MAX (4 * HIST_TOKEN_MAX + 3 + 2 * 20 + 4 + 8 + 1)

struct hist_writer {
	int fd;
};

const char *hist_op_name(enum hist_op op)
{
	switch (op) {
	case HIST_PUT:
		return "put";
	case HIST_GET:
		return "get";
	case HIST_DEL:
		return "del";
	}
	return "?";
}

const char *hist_result_name(enum hist_result r)
{
	switch (r) {
	case HIST_OK:
		return "ok";
	case HIST_FAIL:
		return "fail";
	case HIST_INFO:
		return "info";
	}
	return "?";
}

uint64_t hist_now_us(void)
{
	struct timespec ts;

	/* CLOCK_REALTIME, not the monotonic clock: histories of clients on
	 * several machines (or in several boots) must share one time line. */
	(void)clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Write all of buf with one write(2).  A short write to a regular file
 * means the disk is full or the file too big; the record is then torn and
 * the reader will say so, and the caller hears -EIO (or the write's errno
 * when nothing was written). */
static int write_once(int fd, const char *buf, size_t len)
{
	ssize_t n;

	do {
		n = write(fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if ((size_t)n != len)
		return -EIO;
	return 0;
}

int hist_open(const char *path, struct hist_writer **ret)
{
	struct hist_writer *w = NULL;
	struct stat st;
	int fd = -1;
	int r;

	if (!path || !ret)
		return -EINVAL;
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	/* Emptiness check and header write under one exclusive lock: a second
	 * opener waits, then finds the file non-empty.  Writers of records take
	 * no lock; none can have appended before the header, since each of them
	 * passed through here first. */
	while (flock(fd, LOCK_EX) < 0) {
		if (errno == EINTR)
			continue;
		/* No flock on this file system: go on without it; a doubled
		 * header is only a comment line to the reader. */
		if (errno == ENOLCK || errno == EOPNOTSUPP)
			break;
		r = -errno;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (st.st_size == 0) {
		r = write_once(fd, HIST_HEADER, strlen(HIST_HEADER));
		if (r < 0)
			goto out;
	}
	(void)flock(fd, LOCK_UN);

	w = calloc(1, sizeof(*w));
	if (!w) {
		r = -ENOMEM;
		goto out;
	}
	w->fd = fd;
	fd = -1;
	*ret = w;
	r = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	return r;
}

/* A token the format can carry: 1..HIST_TOKEN_MAX printable ASCII bytes,
 * no space (the field separator) and no control byte (a newline would end
 * the record). */
static int token_valid(const char *s)
{
	size_t n;

	for (n = 0; s[n]; n++) {
		if (n >= HIST_TOKEN_MAX)
			return 0;
		if ((unsigned char)s[n] <= ' ' || (unsigned char)s[n] >= 0x7f)
			return 0;
	}
	return n > 0;
}

int hist_record(struct hist_writer *w, const char *client, enum hist_op op, const char *key,
                const char *value, uint64_t invoke_us, uint64_t complete_us,
                enum hist_result result, const char *master)
{
	char line[HIST_LINE_MAX];
	int n;

	if (!w || w->fd < 0)
		return -EINVAL;
	if (op != HIST_PUT && op != HIST_GET && op != HIST_DEL)
		return -EINVAL;
	if (result != HIST_OK && result != HIST_FAIL && result != HIST_INFO)
		return -EINVAL;
	if (!client || !token_valid(client) || !key || !token_valid(key))
		return -EINVAL;
	/* "-" is how the format spells "no value", so no value may be "-". */
	if (value && (!token_valid(value) || strcmp(value, "-") == 0))
		return -EINVAL;
	/* A put always writes a value, a del never carries one. */
	if ((op == HIST_PUT && !value) || (op == HIST_DEL && value))
		return -EINVAL;
	if (master && !token_valid(master))
		return -EINVAL;

	n = snprintf(line, sizeof(line), "%s %s %s %s %llu %llu %s %s\n", client, hist_op_name(op),
	             key, value ? value : "-", (unsigned long long)invoke_us,
	             (unsigned long long)complete_us, hist_result_name(result),
	             master ? master : "-");
	if (n < 0 || (size_t)n >= sizeof(line))
		return -EINVAL;
	return write_once(w->fd, line, (size_t)n);
}

struct hist_writer *hist_close(struct hist_writer *w)
{
	if (!w)
		return NULL;
	if (w->fd >= 0)
		(void)close(w->fd);
	free(w);
	return NULL;
}
