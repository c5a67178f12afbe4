/* conf: table-driven configuration files (see conf.h).
 *
 * The file is read here line by line and each meaningful line is handed to
 * libinih on its own.  Debian's inih is built without INI_HANDLER_LINENO and
 * only returns the first bad line, so reading the whole file through it
 * would lose the line of every later problem; one line per call makes the
 * line number exact for every message.  It also switches off two inih
 * behaviours that would surprise here: indented lines continuing the
 * previous value, and `[section]` headers silently prefixing keys.  Comments
 * are stripped here too, so that `#` and `;` behave alike everywhere. */
#include "config.h"

#include "lib/conf.h"
#include "lib/util.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* inih reads at most INI_MAX_LINE - 1 bytes at once and would cut a longer
 * line in two, so such lines are refused instead of misread. */
#define CONF_MAX_LINE (INI_MAX_LINE - 1)

/* Bound for the edit-distance suggestion; longer names get none. */
#define CONF_SUGGEST_MAX_NAME 128

struct conf_source {
	const struct conf_key *keys;
	size_t n_keys;
	char *path;
	unsigned *line; /* per key: where set, 0 = default */
	bool *rejected; /* per key: set, but the value was refused */
};

/* ------------------------------------------------------------- errors */

static int errors_addv(struct conf_errors *e, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

static int errors_addv(struct conf_errors *e, const char *fmt, va_list ap)
{
	char **msg = NULL;
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0) {
		s = NULL;
		goto oom;
	}
	msg = realloc(e->msg, (e->n + 1) * sizeof(*msg));
	if (!msg)
		goto oom;
	e->msg = msg;
	e->msg[e->n++] = s;
	return 0;
oom:
	free(s);
	e->n_lost++;
	return -ENOMEM;
}

int conf_errors_add(struct conf_errors *e, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = errors_addv(e, fmt, ap);
	va_end(ap);
	return r;
}

int conf_errors_addf(struct conf_errors *e, const char *path, unsigned line, const char *key,
                     const char *fmt, ...)
{
	char *reason = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&reason, fmt, ap);
	va_end(ap);
	if (r < 0) {
		e->n_lost++;
		return -ENOMEM;
	}
	if (line > 0 && key)
		r = conf_errors_add(e, "%s:%u: %s: %s", path, line, key, reason);
	else if (line > 0)
		r = conf_errors_add(e, "%s:%u: %s", path, line, reason);
	else if (key)
		r = conf_errors_add(e, "%s: %s: %s", path, key, reason);
	else
		r = conf_errors_add(e, "%s: %s", path, reason);
	free(reason);
	return r;
}

size_t conf_errors_count(const struct conf_errors *e)
{
	return e->n + e->n_lost;
}

void conf_errors_print(const struct conf_errors *e, FILE *out)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(out, "%s\n", e->msg[i]);
	if (e->n_lost > 0)
		fprintf(out, "(%zu more problems not shown: out of memory)\n", e->n_lost);
}

void conf_errors_done(struct conf_errors *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	*e = (struct conf_errors){0};
}

/* ------------------------------------------------------------- source */

int conf_source_new(const struct conf_key *keys, size_t n_keys, const char *path,
                    struct conf_source **ret_source)
{
	struct conf_source *s = NULL;
	int r = -ENOMEM;

	s = calloc(1, sizeof(*s));
	if (!s)
		goto out;
	s->keys = keys;
	s->n_keys = n_keys;
	s->path = strdup(path);
	s->line = calloc(n_keys + 1, sizeof(*s->line));
	s->rejected = calloc(n_keys + 1, sizeof(*s->rejected));
	if (!s->path || !s->line || !s->rejected)
		goto out;
	*ret_source = s;
	s = NULL;
	r = 0;
out:
	conf_source_free(s);
	return r;
}

struct conf_source *conf_source_free(struct conf_source *s)
{
	if (!s)
		return NULL;
	free(s->path);
	free(s->line);
	free(s->rejected);
	free(s);
	return NULL;
}

const char *conf_source_path(const struct conf_source *s)
{
	return s->path;
}

static const struct conf_key *key_find(const struct conf_source *s, const char *name, size_t *ret_i)
{
	for (size_t i = 0; i < s->n_keys; i++)
		if (strcmp(s->keys[i].name, name) == 0) {
			*ret_i = i;
			return &s->keys[i];
		}
	return NULL;
}

int conf_key_line(const struct conf_source *s, const char *name)
{
	size_t i;

	if (!key_find(s, name, &i))
		return -ENOENT;
	return (int)s->line[i];
}

bool conf_key_rejected(const struct conf_source *s, const char *name)
{
	size_t i;

	return key_find(s, name, &i) && s->rejected[i];
}

bool conf_blame(const struct conf_source *s, const char *a, const char *b, struct conf_blame *ret)
{
	int la = conf_key_line(s, a), lb = conf_key_line(s, b);
	int lother;

	if (conf_key_rejected(s, a) || conf_key_rejected(s, b))
		return false;
	ret->first = la > 0 || lb <= 0;
	ret->key = ret->first ? a : b;
	ret->line = ret->first ? la : lb;
	lother = ret->first ? lb : la;
	if (lother > 0)
		snprintf(ret->other, sizeof(ret->other), "line %d", lother);
	else
		snprintf(ret->other, sizeof(ret->other), "default");
	return true;
}

/* ------------------------------------------------------------- values */

static char **strv_free(char **v)
{
	if (!v)
		return NULL;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
	return NULL;
}

static void *field_of(const struct conf_key *k, const void *target)
{
	return (char *)target + k->offset;
}

void conf_target_free(const struct conf_key *keys, size_t n_keys, void *target)
{
	if (!target)
		return;
	for (size_t i = 0; i < n_keys; i++) {
		void *f = field_of(&keys[i], target);

		if (keys[i].type == CONF_STRING)
			*(char **)f = mfree(*(char **)f);
		else if (keys[i].type == CONF_STRLIST)
			*(char ***)f = strv_free(*(char ***)f);
	}
}

/* A value being parsed: owns what it allocated until stored. */
struct staged {
	union conf_value v;
	char *str;
	char **strv;
};

static int parse_int(const struct conf_key *k, const char *text, struct staged *st, char *err,
                     size_t errlen)
{
	const char *p = text[0] == '-' ? text + 1 : text;
	char *end = NULL;
	long long n;

	/* strtoll alone would accept blanks, a '+' and an empty string. */
	if (!isdigit((unsigned char)*p)) {
		errbuf_set(err, errlen, "'%s' is not an integer", text);
		return -EINVAL;
	}
	errno = 0;
	n = strtoll(text, &end, 10);
	if (*end != '\0') {
		errbuf_set(err, errlen, "'%s' is not an integer", text);
		return -EINVAL;
	}
	if (errno == ERANGE || n < k->min || n > k->max) {
		errbuf_set(err, errlen, "%s is out of range [%" PRId64 ", %" PRId64 "]", text,
		           k->min, k->max);
		return -EINVAL;
	}
	st->v.i = n;
	return 0;
}

static int parse_bool(const char *text, struct staged *st, char *err, size_t errlen)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			st->v.b = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			st->v.b = false;
			return 0;
		}
	}
	errbuf_set(err, errlen, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", text);
	return -EINVAL;
}

static void choices_list(const struct conf_choice *c, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (; c && c->name && used < len; c++) {
		int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", c->name);

		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static int parse_enum(const struct conf_key *k, const char *text, struct staged *st, char *err,
                      size_t errlen)
{
	char list[512];

	for (const struct conf_choice *c = k->choices; c && c->name; c++)
		if (strcmp(c->name, text) == 0) {
			st->v.e = c->value;
			return 0;
		}
	choices_list(k->choices, list, sizeof(list));
	errbuf_set(err, errlen, "'%s' is not one of: %s", text, list);
	return -EINVAL;
}

static void trim(char **start, char **end)
{
	while (*start < *end && isspace((unsigned char)**start))
		(*start)++;
	while (*end > *start && isspace((unsigned char)(*end)[-1]))
		(*end)--;
}

static int parse_strlist(const char *text, struct staged *st, char *err, size_t errlen)
{
	size_t n = 0, cap = 1;
	char **v = NULL;
	int r = -ENOMEM;

	for (const char *p = text; *p; p++)
		cap += *p == ',';
	v = calloc(cap + 1, sizeof(*v));
	if (!v)
		goto out;
	/* An empty value is an empty list, not a list of one empty item. */
	for (const char *p = text; *text && p;) {
		const char *comma = strchr(p, ',');
		char *b = (char *)p, *e = (char *)(comma ? comma : p + strlen(p));

		trim(&b, &e);
		if (b == e) {
			errbuf_set(err, errlen, "empty item in list '%s'", text);
			r = -EINVAL;
			goto out;
		}
		v[n] = strndup(b, (size_t)(e - b));
		if (!v[n])
			goto out;
		n++;
		p = comma ? comma + 1 : NULL;
	}
	st->strv = v;
	st->v.strv = v;
	v = NULL;
	r = 0;
out:
	strv_free(v);
	return r;
}

/* Parse `text` as the type of k.  Returns 0, -EINVAL with a reason in err,
 * or -ENOMEM. */
static int parse_value(const struct conf_key *k, const char *text, struct staged *st, char *err,
                       size_t errlen)
{
	if (text[0] == '\0' && (k->type == CONF_INT || k->type == CONF_BOOL ||
	                        k->type == CONF_ENUM || (k->type == CONF_STRING && !k->def))) {
		errbuf_set(err, errlen, "value is empty");
		return -EINVAL;
	}
	switch (k->type) {
	case CONF_STRING:
		st->str = strdup(text);
		if (!st->str)
			return -ENOMEM;
		st->v.str = st->str;
		return 0;
	case CONF_INT:
		return parse_int(k, text, st, err, errlen);
	case CONF_BOOL:
		return parse_bool(text, st, err, errlen);
	case CONF_ENUM:
		return parse_enum(k, text, st, err, errlen);
	case CONF_STRLIST:
		return parse_strlist(text, st, err, errlen);
	}
	errbuf_set(err, errlen, "unknown type %d", (int)k->type);
	return -EINVAL;
}

/* Move the staged value into the target field, freeing what it held. */
static void store_value(const struct conf_key *k, struct staged *st, void *target)
{
	void *f = field_of(k, target);

	switch (k->type) {
	case CONF_STRING:
		free(*(char **)f);
		*(char **)f = st->str;
		st->str = NULL;
		break;
	case CONF_INT:
		*(int64_t *)f = st->v.i;
		break;
	case CONF_BOOL:
		*(bool *)f = st->v.b;
		break;
	case CONF_ENUM:
		*(int *)f = st->v.e;
		break;
	case CONF_STRLIST:
		strv_free(*(char ***)f);
		*(char ***)f = st->strv;
		st->strv = NULL;
		break;
	}
}

static void staged_done(struct staged *st)
{
	st->str = mfree(st->str);
	st->strv = strv_free(st->strv);
}

/* ------------------------------------------------------------- ${VAR} */

struct buf {
	char *p;
	size_t len, cap;
};

static int buf_append(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static bool var_name_valid(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* Replace each ${NAME} of `in` by the environment variable NAME and each
 * $${ by a literal ${.  Returns 0 and *ret (to free), -EINVAL with a reason
 * in err, or -ENOMEM. */
static int expand_env(const char *in, char **ret, char *err, size_t errlen)
{
	struct buf b = {0};
	const char *p = in;
	int r = -ENOMEM;

	if (buf_append(&b, "", 0) < 0)
		goto out;
	while (*p) {
		const char *dollar = strchr(p, '$');
		const char *name, *close, *val;
		char var[256];

		if (!dollar) {
			if (buf_append(&b, p, strlen(p)) < 0)
				goto out;
			break;
		}
		if (buf_append(&b, p, (size_t)(dollar - p)) < 0)
			goto out;
		if (dollar[1] == '$' && dollar[2] == '{') {
			if (buf_append(&b, "${", 2) < 0)
				goto out;
			p = dollar + 3;
			continue;
		}
		if (dollar[1] != '{') {
			if (buf_append(&b, "$", 1) < 0)
				goto out;
			p = dollar + 1;
			continue;
		}
		name = dollar + 2;
		close = strchr(name, '}');
		if (!close) {
			errbuf_set(err, errlen, "unterminated '${' in '%s'", in);
			r = -EINVAL;
			goto out;
		}
		if (!var_name_valid(name, (size_t)(close - name)) ||
		    (size_t)(close - name) >= sizeof(var)) {
			errbuf_set(err, errlen,
			           "'%.*s' is not a valid environment variable reference",
			           (int)(close - dollar + 1), dollar);
			r = -EINVAL;
			goto out;
		}
		memcpy(var, name, (size_t)(close - name));
		var[close - name] = '\0';
		val = getenv(var);
		if (!val) {
			errbuf_set(err, errlen, "environment variable '%s' is not set", var);
			r = -EINVAL;
			goto out;
		}
		if (buf_append(&b, val, strlen(val)) < 0)
			goto out;
		p = close + 1;
	}
	*ret = b.p;
	b.p = NULL;
	r = 0;
out:
	free(b.p);
	return r;
}

/* ------------------------------------------------------------- loading */

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[CONF_SUGGEST_MAX_NAME + 1];

	if (la > CONF_SUGGEST_MAX_NAME || lb > CONF_SUGGEST_MAX_NAME)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static const char *suggest(const struct conf_source *s, const char *name)
{
	const char *best = NULL;
	size_t best_d = 3; /* suggest only within an edit distance of 2 */

	for (size_t i = 0; i < s->n_keys; i++) {
		size_t d = edit_distance(name, s->keys[i].name);

		if (d < best_d) {
			best_d = d;
			best = s->keys[i].name;
		}
	}
	return best;
}

struct load_ctx {
	struct conf_source *s;
	void *target;
	struct conf_errors *errs;
	unsigned line;
	int r; /* first -ENOMEM, which ends the load */
};

static void report(struct load_ctx *c, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void report(struct load_ctx *c, const char *key, const char *fmt, ...)
{
	char reason[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	(void)conf_errors_addf(c->errs, c->s->path, c->line, key, "%s", reason);
}

/* inih handler for one `key = value` line.  Always returns 1: problems are
 * recorded in the context, never through inih's first-error-line result. */
static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *c = user;
	struct staged st = {0};
	const struct conf_key *k;
	char *expanded = NULL;
	char err[1024] = "";
	size_t i;
	int r;

	(void)section; /* always "": headers never reach inih */
	if (name[0] == '\0') {
		report(c, NULL, "missing key before '='");
		goto out;
	}
	k = key_find(c->s, name, &i);
	if (!k) {
		const char *hint = suggest(c->s, name);

		if (hint)
			report(c, name, "unknown key (did you mean '%s'?)", hint);
		else
			report(c, name, "unknown key");
		goto out;
	}
	if (c->s->line[i] > 0) {
		report(c, name, "set twice (first at line %u)", c->s->line[i]);
		goto out;
	}
	c->s->line[i] = c->line;
	c->s->rejected[i] = true; /* until the value is stored */

	r = expand_env(value, &expanded, err, sizeof(err));
	if (r == 0)
		r = parse_value(k, expanded, &st, err, sizeof(err));
	if (r == 0 && k->validate)
		r = k->validate(&st.v, err, sizeof(err));
	if (r == -ENOMEM) {
		c->r = r;
		goto out;
	}
	if (r < 0) {
		report(c, name, "%s", err);
		goto out;
	}
	store_value(k, &st, c->target);
	c->s->rejected[i] = false;
out:
	staged_done(&st);
	free(expanded);
	return 1;
}

/* Cut a comment off `line`: one starts at a `#` or `;` that begins the line
 * or follows a blank.  inih itself only knows `;` inline, `#` only at the
 * start of a line; doing both here makes them behave the same. */
static void strip_comment(char *line)
{
	for (char *p = line; *p; p++)
		if ((*p == '#' || *p == ';') && (p == line || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
}

static void handle_line(struct load_ctx *c, char *line)
{
	char *start = line, *end = line + strlen(line);
	char *eq, *colon;
	int r;

	strip_comment(line);
	end = line + strlen(line);
	trim(&start, &end);
	*end = '\0';
	if (start == end)
		return;
	if (end - start > CONF_MAX_LINE) {
		report(c, NULL, "line is longer than %d characters (comments and blanks aside)",
		       CONF_MAX_LINE);
		return;
	}
	if (*start == '[') {
		report(c, NULL,
		       "section headers are not supported; write dotted keys such as "
		       "'section.key = value'");
		return;
	}
	eq = strchr(start, '=');
	if (!eq) {
		report(c, NULL, "expected 'key = value', found no '=' in '%s'", start);
		return;
	}
	/* inih also splits at ':'; in this format ':' is never a separator. */
	colon = strchr(start, ':');
	if (colon && colon < eq) {
		report(c, NULL, "expected 'key = value', found ':' before '=' in '%s'", start);
		return;
	}
	r = ini_parse_string(start, on_pair, c);
	if (r == -2)
		c->r = -ENOMEM;
	else if (r != 0)
		report(c, NULL, "cannot parse '%s'", start); /* not expected after the checks */
}

/* Set every key to its default.  A default that does not parse is a bug in
 * the table; it is reported like a problem of the file. */
static int apply_defaults(struct conf_source *s, void *target, struct conf_errors *errs)
{
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct conf_key *k = &s->keys[i];
		struct staged st = {0};
		char err[1024] = "";
		int r;

		r = parse_value(k, k->def ? k->def : "", &st, err, sizeof(err));
		if (r == -EINVAL && !k->def)
			r = 0; /* required: leave the zero value until the file sets it */
		else if (r == 0)
			store_value(k, &st, target);
		staged_done(&st);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			(void)conf_errors_addf(errs, s->path, 0, k->name,
			                       "invalid built-in default '%s': %s", k->def, err);
	}
	return 0;
}

int conf_source_load_stream(struct conf_source *s, FILE *f, void *target, struct conf_errors *errs)
{
	struct load_ctx c = {.s = s, .target = target, .errs = errs};
	size_t before = conf_errors_count(errs);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r;

	r = apply_defaults(s, target, errs);
	if (r < 0)
		goto out;
	while ((n = getline(&line, &cap, f)) >= 0) {
		c.line++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		/* A UTF-8 byte order mark, as some editors write. */
		if (c.line == 1 && strncmp(line, "\xEF\xBB\xBF", 3) == 0)
			memmove(line, line + 3, (size_t)n - 2);
		handle_line(&c, line);
		if (c.r < 0) {
			r = c.r;
			goto out;
		}
	}
	if (ferror(f)) {
		r = -EIO;
		(void)conf_errors_addf(errs, s->path, 0, NULL, "cannot read: %s", strerror(EIO));
		goto out;
	}
	for (size_t i = 0; i < s->n_keys; i++)
		if (!s->keys[i].def && s->line[i] == 0)
			(void)conf_errors_addf(errs, s->path, 0, s->keys[i].name,
			                       "required key is missing");
	r = conf_errors_count(errs) > before ? -EINVAL : 0;
out:
	free(line);
	return r;
}

int conf_source_load(struct conf_source *s, void *target, struct conf_errors *errs)
{
	FILE *f = NULL;
	int r;

	f = fopen(s->path, "re");
	if (!f) {
		r = -errno;
		/* Defaults first anyway: the caller may rely on a populated target. */
		if (apply_defaults(s, target, errs) == -ENOMEM)
			r = -ENOMEM;
		(void)conf_errors_addf(errs, s->path, 0, NULL, "cannot open: %s", strerror(-r));
		return r;
	}
	r = conf_source_load_stream(s, f, target, errs);
	fclose(f);
	return r;
}

/* ------------------------------------------------------------- output */

/* Write `s` with each `${` as `$${`, so it reads back unchanged. */
static void put_escaped(const char *s, FILE *out)
{
	for (; *s; s++) {
		if (s[0] == '$' && s[1] == '{')
			fputc('$', out);
		fputc(*s, out);
	}
}

static const char *choice_name(const struct conf_choice *c, int value)
{
	for (; c && c->name; c++)
		if (c->value == value)
			return c->name;
	return "?";
}

void conf_dump(const struct conf_source *s, const void *target, FILE *out)
{
	for (size_t i = 0; i < s->n_keys; i++) {
		const struct conf_key *k = &s->keys[i];
		const void *f = field_of(k, target);
		char *const *v;

		fprintf(out, "%s = ", k->name);
		switch (k->type) {
		case CONF_STRING:
			put_escaped(*(char *const *)f ? *(char *const *)f : "", out);
			break;
		case CONF_INT:
			fprintf(out, "%" PRId64, *(const int64_t *)f);
			break;
		case CONF_BOOL:
			fputs(*(const bool *)f ? "true" : "false", out);
			break;
		case CONF_ENUM:
			fputs(choice_name(k->choices, *(const int *)f), out);
			break;
		case CONF_STRLIST:
			v = *(char **const *)f;
			for (size_t j = 0; v && v[j]; j++) {
				fputs(j ? ", " : "", out);
				put_escaped(v[j], out);
			}
			break;
		}
		if (s->line[i] == 0 && k->derived)
			fprintf(out, "  # derived: %s", k->derived);
		else if (s->line[i] == 0)
			fputs("  # default", out);
		fputc('\n', out);
	}
}

static const char *type_name(enum conf_type t)
{
	switch (t) {
	case CONF_STRING:
		return "string";
	case CONF_INT:
		return "integer";
	case CONF_BOOL:
		return "boolean";
	case CONF_ENUM:
		return "enum";
	case CONF_STRLIST:
		return "list";
	}
	return "?";
}

/* Markdown table cells: a '|' would end the cell. */
static void md_text(const char *s, FILE *out)
{
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', out);
		fputc(*s, out);
	}
}

void conf_print_reference(const struct conf_key *keys, size_t n_keys, FILE *out)
{
	fprintf(out,
	        "## Syntax\n"
	        "\n"
	        "One setting per line, `key = value`.  Keys are dotted (`group.key`); there\n"
	        "are no `[section]` headers, and a line starting with `[` is an error.\n"
	        "Blanks around the key and the value are ignored; the rest of the value is\n"
	        "taken literally, quotes included.  A line whose first non-blank character is\n"
	        "`#` or `;` is a comment, and so is the rest of a line from a `#` or `;` that\n"
	        "follows a blank (`key = a # note` sets `a`; in `a#b` the `#` is kept).  A\n"
	        "line holds at most %d characters (comments and outer blanks aside); a value\n"
	        "never continues on the next line.  Each key may be set only once.\n"
	        "\n"
	        "`${NAME}` in a value is replaced by the environment variable `NAME` before\n"
	        "the value is parsed, so that one file can serve many hosts.  An unset\n"
	        "variable is an error, not an empty string; an unterminated `${` is an error\n"
	        "too.  `$${` stands for a literal `${`; any other `$` is kept as it is.  The\n"
	        "value of a variable is not expanded again.\n"
	        "\n"
	        "Types: *string*; *integer* (decimal, within the bounds shown; keys ending in\n"
	        "`_ms` are durations in milliseconds); *boolean* (`true`/`false`, `yes`/`no`,\n"
	        "`on`/`off`, `1`/`0`, in any case); *enum* (exactly one of the words shown);\n"
	        "*list* (comma-separated strings; blanks around items are ignored, empty\n"
	        "items are refused).\n"
	        "\n"
	        "Every problem of a file is reported, one per line, as `FILE:LINE: KEY:\n"
	        "reason`, and the program does not start.  Problems that belong to no line\n"
	        "are reported without one: a missing required key (`FILE: KEY: required key\n"
	        "is missing`) and a file that cannot be opened (`FILE: cannot open: reason`).\n"
	        "\n"
	        "## Keys\n"
	        "\n"
	        "| Key | Type | Default | Bounds / choices | Reload | Description |\n"
	        "|-----|------|---------|------------------|--------|-------------|\n",
	        CONF_MAX_LINE);
	for (size_t i = 0; i < n_keys; i++) {
		const struct conf_key *k = &keys[i];

		fprintf(out, "| `%s` | %s | ", k->name, type_name(k->type));
		if (!k->def)
			fputs("*required*", out);
		else if (k->derived) {
			fputs("*", out);
			md_text(k->derived, out);
			fputs("*", out);
		} else if (k->def[0] == '\0')
			fputs("*empty*", out);
		else {
			fputs("`", out);
			md_text(k->def, out);
			fputs("`", out);
		}
		fputs(" | ", out);
		if (k->type == CONF_INT)
			fprintf(out, "[%" PRId64 ", %" PRId64 "]", k->min, k->max);
		for (const struct conf_choice *c = k->choices; k->type == CONF_ENUM && c && c->name;
		     c++)
			fprintf(out, "%s`%s`", c == k->choices ? "" : ", ", c->name);
		fputs(k->live ? " | live | " : " | restart | ", out);
		md_text(k->help, out);
		fputs(" |\n", out);
	}
}
