/* ctlproto: the line grammar of the control socket between a node agent and
 * the service it manages (docs/control-protocol.md), parsed and written in
 * one place for both ends.
 *
 * A line is a verb followed by `key=value` fields separated by single
 * spaces, at most CTLPROTO_LINE_MAX bytes without its newline.  Values are
 * single tokens, except a field of type CTLPROTO_REST (the `reason=` of the
 * protocol), which takes the rest of the line, spaces included.  Unknown
 * verbs, unknown fields, fields a verb does not take, repeated fields,
 * missing required fields and values out of bounds are errors.
 *
 * Each end describes what it receives as a grammar: a table of fields (name,
 * type, bounds) and a table of verbs (which fields each requires and
 * allows); what the fields mean stays with that end.  Everything here is
 * pure: no I/O, no allocation, no logging, no global state; safe from any
 * thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line, without its "\n". */
#define CTLPROTO_LINE_MAX 4096
/* The protocol version both ends speak: write grants are absolute
 * CLOCK_MONOTONIC times (not so in 1) and PING is answered with PONG (not
 * so in 2). */
#define CTLPROTO_VERSION 3
/* Fields one grammar may define (bits of a uint32_t). */
#define CTLPROTO_FIELDS_MAX 32

enum ctlproto_type {
	CTLPROTO_U64,  /* decimal digits only, the value within [min, max] */
	CTLPROTO_TEXT, /* one token, its length within [min, max] bytes */
	CTLPROTO_REST, /* the rest of the line from its key on, length within [min, max] */
};

struct ctlproto_field {
	const char *name;
	enum ctlproto_type type;
	uint64_t min, max;
	/* Optional, U64 only: a further check of the value, run when the
	 * field is read (in line order, before the missing-field check).
	 * Returns 0, or -EBADMSG with the whole message in err. */
	int (*check)(uint64_t value, char *err, size_t errlen);
};

/* The bit of field index i in the masks below. */
#define CTLPROTO_F(i) (UINT32_C(1) << (i))

struct ctlproto_verb {
	const char *name;
	int id;            /* the caller's value for the verb, given back by the parser */
	uint32_t required; /* CTLPROTO_F() of the fields it must carry */
	uint32_t optional; /* ... and of those it may carry besides */
};

struct ctlproto_grammar {
	const struct ctlproto_field *fields;
	size_t nfields; /* <= CTLPROTO_FIELDS_MAX */
	const struct ctlproto_verb *verbs;
	size_t nverbs;
};

/* A parsed line.  The parser works in it: text values point into buf.  A
 * field the line does not carry reads 0 (u64) or NULL (text). */
struct ctlproto_line {
	const struct ctlproto_verb *verb;
	uint32_t seen;                         /* CTLPROTO_F() of the fields present */
	uint64_t u64[CTLPROTO_FIELDS_MAX];     /* U64 fields, by field index */
	const char *text[CTLPROTO_FIELDS_MAX]; /* TEXT and REST fields (NUL-terminated) */
	char buf[CTLPROTO_LINE_MAX + 1];
};

/* Parse one line (without its newline) against grammar g.  Returns 0 and
 * fills *ret, or -EBADMSG with the reason in err (*ret is then
 * unspecified).  The messages:
 *   "line longer than 4096 bytes"
 *   "unknown verb 'V'"
 *   "'T' is not key=value"
 *   "VERB: unknown field 'K'"
 *   "VERB: field 'K' does not belong here"
 *   "VERB: field 'K' given twice"
 *   "VERB: 'X' is not a valid K"                 (U64 not digits or out of bounds)
 *   "K: empty or longer than N bytes"           (TEXT/REST with min 1)
 *   "K: longer than N bytes"                    (with min 0)
 *   "K: shorter than M or longer than N bytes"  (otherwise)
 *   the field's own check's message
 *   "VERB: field 'K' is missing"                 (the first missing in table order)
 * Quoted tokens from the line are cut at 32 bytes. */
int ctlproto_parse(const struct ctlproto_grammar *g, const char *line, struct ctlproto_line *ret,
                   char *err, size_t errlen);

static inline bool ctlproto_has(const struct ctlproto_line *l, unsigned field)
{
	return (l->seen & CTLPROTO_F(field)) != 0;
}

/* A line being written: ctlproto_out_begin, the fields, ctlproto_out_end.
 * Errors are sticky: the first one is what ctlproto_out_end returns. */
struct ctlproto_out {
	char buf[CTLPROTO_LINE_MAX + 2]; /* the line, its "\n" and a NUL */
	size_t len;
	int error;
	bool rest; /* a REST field was written: nothing may follow it */
};

/* Start the line o with verb (o is reset; a verb or key that is empty or has
 * a space, a control character or '=' is -EINVAL).  Never fails itself; none
 * of these functions blocks or allocates. */
void ctlproto_out_begin(struct ctlproto_out *o, const char *verb);
/* " key=value", in decimal. */
void ctlproto_out_u64(struct ctlproto_out *o, const char *key, uint64_t value);
/* A negative value cannot be written (the grammar's numbers are unsigned):
 * -EINVAL. */
void ctlproto_out_i64(struct ctlproto_out *o, const char *key, int64_t value);
/* A single token: a value with a space or a control character is -EINVAL.
 * An empty value (or NULL) is written as such (the receiver judges it). */
void ctlproto_out_text(struct ctlproto_out *o, const char *key, const char *value);
/* The last field, taking the rest of the line: CR, LF and other control
 * characters in value are written as spaces, so the line stays one line.
 * NULL is written as "". */
void ctlproto_out_rest(struct ctlproto_out *o, const char *key, const char *value);
/* Append "\n".  Returns the length of the line with its newline (buf holds
 * it, NUL-terminated), or the first error: -EMSGSIZE when the line would be
 * longer than CTLPROTO_LINE_MAX, -EINVAL for a bad key or value or a field
 * after a REST field. */
int ctlproto_out_end(struct ctlproto_out *o);
