/* history: the operation histories that clients record and kf-lincheck judges.
 *
 * Every client of the MetaService (kf-labclient, the failover harness,
 * kubefence-meta's batch mode, the nemesis clients) appends one line per
 * operation it invoked, whatever came of it.  The format (docs/history.md):
 *
 *   # kfhistory 1                                  first line, the version
 *   CLIENT OP KEY VALUE INVOKE_US COMPLETE_US RESULT MASTER
 *
 * OP is put, get or del; VALUE is the value written (put) or read (get ok),
 * "-" for none (del, a get that found nothing); INVOKE_US and COMPLETE_US are
 * CLOCK_REALTIME microseconds on this machine; RESULT is ok (done, or read
 * as shown), fail (certainly not done) or info (indeterminate: a time-out, a
 * lost connection, or an answer the protocol defines as outcome-unknown);
 * MASTER is the server the operation was sent to ("-" when none).  Tokens are
 * 1..1024 printable ASCII bytes without spaces; a value is never "-".
 *
 * Thread-safe: each record is one write(2) to a file opened O_APPEND, so
 * several threads and processes may append to one file. */
#pragma once

#include <stdint.h>

enum hist_op { HIST_PUT, HIST_GET, HIST_DEL };
enum hist_result { HIST_OK, HIST_FAIL, HIST_INFO };

struct hist_writer;

/* Open (creating it, mode 0644) or append to the history file at path; the
 * version line is written when the file is empty.  Returns 0 and *ret, or
 * -errno. */
int hist_open(const char *path, struct hist_writer **ret);

/* CLOCK_REALTIME in microseconds, the clock of INVOKE_US and COMPLETE_US. */
uint64_t hist_now_us(void);

/* Append one operation.  value may be NULL (written as "-"); master may be
 * NULL ("-").  Returns 0, -EINVAL for a token that the format cannot carry
 * (empty, too long, a space or control byte, a value of "-"), or the -errno
 * of write(2).  Never blocks on anything but the write. */
int hist_record(struct hist_writer *w, const char *client, enum hist_op op, const char *key,
                const char *value, uint64_t invoke_us, uint64_t complete_us,
                enum hist_result result, const char *master);

/* Close; takes NULL; returns NULL. */
struct hist_writer *hist_close(struct hist_writer *w);

/* "put"/"get"/"del" and "ok"/"fail"/"info". */
const char *hist_op_name(enum hist_op op);
const char *hist_result_name(enum hist_result r);
