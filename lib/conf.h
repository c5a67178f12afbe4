/* conf: a generic, table-driven reader for `key = value` configuration files.
 *
 * A program describes its keys once, in a table of `struct conf_key` (name,
 * type, default, bounds or choices, where the value lives in the program's
 * struct, one line of help, an optional validator).  From that one table this
 * module fills the struct from a file, reports every problem as
 * `FILE:LINE: KEY: reason`, prints the effective values (--dump-config) and
 * prints a Markdown reference (--config-reference), so the code, the checks
 * and the documentation cannot disagree.  Lines are split by libinih; this
 * module adds what inih leaves open: exact line numbers for every error,
 * `${VAR}` expansion from the environment, typed parsing, duplicate and
 * missing-key detection.  It knows nothing of what the keys mean; checks that
 * involve several keys belong to the program, which can ask where each key
 * was set (conf_key_line()) to report them at the right line. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How a value is parsed, and the C type of the field it is stored in. */
enum conf_type {
	CONF_STRING,  /* char *, owned by the target (freed by conf_target_free()) */
	CONF_INT,     /* int64_t, decimal, within [min, max]; durations are ints named *_ms */
	CONF_BOOL,    /* bool: true/false, yes/no, on/off, 1/0 (any case) */
	CONF_ENUM,    /* int: the `value` of the matching choice */
	CONF_STRLIST, /* char **, NULL-terminated, from a comma-separated list */
};

/* One allowed word of a CONF_ENUM key; a table ends with { NULL, 0 }. */
struct conf_choice {
	const char *name;
	int value;
};

/* A parsed value, as handed to a validator. */
union conf_value {
	const char *str;   /* CONF_STRING */
	int64_t i;         /* CONF_INT */
	bool b;            /* CONF_BOOL */
	int e;             /* CONF_ENUM */
	char *const *strv; /* CONF_STRLIST, NULL-terminated */
};

/* Returns 0 when `v` is acceptable; otherwise -EINVAL and a reason (without
 * file, line or key: the caller adds them) in err. */
typedef int (*conf_validate_fn)(const union conf_value *v, char *err, size_t errlen);

/* One row of a program's table.  Unused members stay zero. */
struct conf_key {
	/* Dotted, e.g. "group.timeout_ms". */
	const char *name;
	enum conf_type type;
	/* The default, written as in a file; NULL makes the key required. */
	const char *def;
	/* CONF_INT bounds, inclusive. */
	int64_t min, max;
	/* CONF_ENUM only: the allowed words. */
	const struct conf_choice *choices;
	/* offsetof() the field in the target struct. */
	size_t offset;
	/* One line for the reference (Markdown allowed). */
	const char *help;
	/* Optional check of a parsed value; not applied to the default. */
	conf_validate_fn validate;
	/* Optional: the program replaces the default after load; says with
	 * what (e.g. "the value of host.name"), for the reference and dump. */
	const char *derived;
	/* The program applies a new value while it runs (a reload); false:
	 * a change needs a restart.  Shown in the reference. */
	bool live;
};

/* Every problem found while loading, as ready-to-print lines.  Start from
 * a zeroed struct; release with conf_errors_done(). */
struct conf_errors {
	char **msg; /* msg[0 .. n-1] */
	size_t n;
	size_t n_lost; /* problems that could not be recorded for lack of memory */
};

/* Append one message.  Returns 0, or -ENOMEM (then n_lost is counted). */
int conf_errors_add(struct conf_errors *e, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* Append `PATH:LINE: KEY: reason`, or `PATH: KEY: reason` when line is 0, or
 * without `KEY: ` when key is NULL.  Returns as conf_errors_add(). */
int conf_errors_addf(struct conf_errors *e, const char *path, unsigned line, const char *key,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Problems reported so far, recorded or not. */
size_t conf_errors_count(const struct conf_errors *e);

/* Print each message on its own line. */
void conf_errors_print(const struct conf_errors *e, FILE *out);

/* Free the messages; the struct is zeroed and can be reused. NULL-safe. */
void conf_errors_done(struct conf_errors *e);

/* One load of one file against one key table: remembers, per key, the line
 * that set it.  Keeps pointers to `keys` (which must outlive it). */
struct conf_source;

/* Returns 0 and *ret_source, or -ENOMEM.  `path` is copied; it names the
 * file in messages and is what conf_source_load() opens. */
int conf_source_new(const struct conf_key *keys, size_t n_keys, const char *path,
                    struct conf_source **ret_source);

/* NULL-safe; returns NULL. */
struct conf_source *conf_source_free(struct conf_source *s);

/* Fill `target` (a zeroed struct described by the table) with every default,
 * then with the values of the file, collecting every problem into errs.
 * The target is always left fully populated (defaults where the file said
 * nothing usable), so conf_target_free() is always right afterwards.
 * Returns 0; -EINVAL when problems were reported; the -errno of open/read
 * failures (also reported, as `PATH: cannot open: reason`); -ENOMEM.
 * Blocks on file I/O only.  May be called once per source. */
int conf_source_load(struct conf_source *s, void *target, struct conf_errors *errs);

/* As conf_source_load(), reading an already open stream (not closed); the
 * path given to conf_source_new() is only used in messages. */
int conf_source_load_stream(struct conf_source *s, FILE *f, void *target, struct conf_errors *errs);

const char *conf_source_path(const struct conf_source *s);

/* The line that set key `name`: > 0 when set in the file (even if the value
 * was rejected), 0 when left at its default, -ENOENT for a key not in the
 * table. */
int conf_key_line(const struct conf_source *s, const char *name);

/* true when the file set `name` but its value was rejected, so the field
 * still holds the default: cross-key checks should then skip it. */
bool conf_key_rejected(const struct conf_source *s, const char *name);

/* Which of two keys a problem between them is reported at (for a program's
 * cross-key checks): the first when the file set it, else the second when
 * the file set that one, else the first without a line (both defaults: a
 * bug in the table).  `other` says where the other key's value came from:
 * "line N" or "default". */
struct conf_blame {
	bool first; /* report at the first key */
	const char *key;
	int line;
	char other[64];
};

/* Fill *ret for keys a and b and return true; false (nothing to report)
 * when either value was rejected: that was reported already, and the field
 * holds the default. */
bool conf_blame(const struct conf_source *s, const char *a, const char *b, struct conf_blame *ret);

/* Free the CONF_STRING and CONF_STRLIST fields of target and set them to
 * NULL.  NULL-safe. */
void conf_target_free(const struct conf_key *keys, size_t n_keys, void *target);

/* Print `key = value` for every key in table order, with `  # default`
 * after values that were not set by the file (`  # derived: ...` for keys
 * with a `derived` text).  `${` inside values is written as `$${`, so the
 * output reads back as the same values. */
void conf_dump(const struct conf_source *s, const void *target, FILE *out);

/* Print the Markdown section describing the file syntax (comments, ${VAR},
 * errors), then the table key | type | default | bounds/choices | help. */
void conf_print_reference(const struct conf_key *keys, size_t n_keys, FILE *out);
