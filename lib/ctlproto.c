/* ctlproto: the control socket's line grammar (see ctlproto.h). */
#include "config.h"

#include "lib/ctlproto.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lib/util.h"

/* ---------------------------------------------------------------- parse */

static const struct ctlproto_verb *find_verb(const struct ctlproto_grammar *g, const char *name)
{
	for (size_t i = 0; i < g->nverbs; i++)
		if (strcmp(g->verbs[i].name, name) == 0)
			return &g->verbs[i];
	return NULL;
}

/* The index of the field named by the first `len` bytes of key, or -1. */
static int find_field(const struct ctlproto_grammar *g, const char *key, size_t len)
{
	for (size_t i = 0; i < g->nfields; i++)
		if (strncmp(g->fields[i].name, key, len) == 0 && g->fields[i].name[len] == '\0')
			return (int)i;
	return -1;
}

/* Does p begin with "K=" for a REST field K? */
static bool at_rest_field(const struct ctlproto_grammar *g, const char *p)
{
	const char *eq = strpbrk(p, "= ");
	int f;

	if (!eq || *eq != '=')
		return false;
	f = find_field(g, p, (size_t)(eq - p));
	return f >= 0 && g->fields[f].type == CTLPROTO_REST;
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int check_length(const struct ctlproto_field *f, const char *v, char *err, size_t errlen)
{
	size_t len = strlen(v);

	if (len >= f->min && len <= f->max)
		return 0;
	if (f->min == 0)
		errbuf_set(err, errlen, "%s: longer than %" PRIu64 " bytes", f->name, f->max);
	else if (f->min == 1)
		errbuf_set(err, errlen, "%s: empty or longer than %" PRIu64 " bytes", f->name,
		           f->max);
	else
		errbuf_set(err, errlen,
		           "%s: shorter than %" PRIu64 " or longer than %" PRIu64 " bytes", f->name,
		           f->min, f->max);
	return -EBADMSG;
}

int ctlproto_parse(const struct ctlproto_grammar *g, const char *line, struct ctlproto_line *ret,
                   char *err, size_t errlen)
{
	const struct ctlproto_verb *verb;
	size_t len = strlen(line);
	char *p, *tok;
	uint32_t allowed, missing;

	if (len > CTLPROTO_LINE_MAX) {
		errbuf_set(err, errlen, "line longer than %d bytes", CTLPROTO_LINE_MAX);
		return -EBADMSG;
	}
	memcpy(ret->buf, line, len + 1);
	ret->seen = 0;
	memset(ret->u64, 0, sizeof(ret->u64));
	memset(ret->text, 0, sizeof(ret->text));
	p = ret->buf;
	tok = strsep(&p, " ");
	verb = find_verb(g, tok);
	if (!verb) {
		errbuf_set(err, errlen, "unknown verb '%.32s'", tok);
		return -EBADMSG;
	}
	ret->verb = verb;
	allowed = verb->required | verb->optional;

	while (p && *p) {
		const struct ctlproto_field *f;
		char *eq;
		int i;

		if (at_rest_field(g, p)) {
			tok = p;
			p = NULL;
		} else {
			tok = strsep(&p, " ");
		}
		eq = strchr(tok, '=');
		if (!eq || eq == tok) {
			errbuf_set(err, errlen, "'%.32s' is not key=value", tok);
			return -EBADMSG;
		}
		*eq++ = '\0';
		i = find_field(g, tok, strlen(tok));
		if (i < 0) {
			errbuf_set(err, errlen, "%s: unknown field '%.32s'", verb->name, tok);
			return -EBADMSG;
		}
		f = &g->fields[i];
		if (!(allowed & CTLPROTO_F(i))) {
			errbuf_set(err, errlen, "%s: field '%s' does not belong here", verb->name,
			           tok);
			return -EBADMSG;
		}
		if (ret->seen & CTLPROTO_F(i)) {
			errbuf_set(err, errlen, "%s: field '%s' given twice", verb->name, tok);
			return -EBADMSG;
		}
		ret->seen |= CTLPROTO_F(i);
		if (f->type != CTLPROTO_U64) {
			if (check_length(f, eq, err, errlen) < 0)
				return -EBADMSG;
			ret->text[i] = eq;
			continue;
		}
		if (parse_u64(eq, f->min, f->max, &ret->u64[i]) < 0) {
			errbuf_set(err, errlen, "%s: '%.32s' is not a valid %s", verb->name, eq,
			           tok);
			return -EBADMSG;
		}
		if (f->check && f->check(ret->u64[i], err, errlen) < 0)
			return -EBADMSG;
	}
	missing = verb->required & ~ret->seen;
	if (missing) {
		size_t i = 0;

		while (!(missing & CTLPROTO_F(i)))
			i++;
		errbuf_set(err, errlen, "%s: field '%s' is missing", verb->name, g->fields[i].name);
		return -EBADMSG;
	}
	return 0;
}

/* ---------------------------------------------------------------- write */

static void out_fail(struct ctlproto_out *o, int error)
{
	if (!o->error)
		o->error = error;
}

static void out_bytes(struct ctlproto_out *o, const char *s, size_t n)
{
	if (o->error)
		return;
	if (o->len + n > CTLPROTO_LINE_MAX) {
		out_fail(o, -EMSGSIZE);
		return;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
	o->buf[o->len] = '\0';
}

/* A value token: no space, no control character (empty is fine). */
static bool is_value(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

/* A verb or key: a non-empty value token without '='. */
static bool is_name(const char *s)
{
	return *s && is_value(s) && !strchr(s, '=');
}

/* " key=" */
static void out_key(struct ctlproto_out *o, const char *key)
{
	if (!is_name(key)) {
		out_fail(o, -EINVAL);
		return;
	}
	if (o->rest) {
		out_fail(o, -EINVAL); /* the REST field must be the last */
		return;
	}
	out_bytes(o, " ", 1);
	out_bytes(o, key, strlen(key));
	out_bytes(o, "=", 1);
}

void ctlproto_out_begin(struct ctlproto_out *o, const char *verb)
{
	o->len = 0;
	o->error = 0;
	o->rest = false;
	o->buf[0] = '\0';
	if (!is_name(verb)) {
		out_fail(o, -EINVAL);
		return;
	}
	out_bytes(o, verb, strlen(verb));
}

void ctlproto_out_u64(struct ctlproto_out *o, const char *key, uint64_t value)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, value);

	out_key(o, key);
	out_bytes(o, num, (size_t)n);
}

void ctlproto_out_i64(struct ctlproto_out *o, const char *key, int64_t value)
{
	if (value < 0) {
		out_fail(o, -EINVAL);
		return;
	}
	ctlproto_out_u64(o, key, (uint64_t)value);
}

void ctlproto_out_text(struct ctlproto_out *o, const char *key, const char *value)
{
	if (!value)
		value = "";
	out_key(o, key);
	if (!is_value(value)) {
		out_fail(o, -EINVAL);
		return;
	}
	out_bytes(o, value, strlen(value));
}

void ctlproto_out_rest(struct ctlproto_out *o, const char *key, const char *value)
{
	size_t start;

	if (!value)
		value = "";
	out_key(o, key);
	o->rest = true;
	start = o->len;
	out_bytes(o, value, strlen(value));
	if (o->error)
		return;
	for (size_t i = start; i < o->len; i++)
		if ((unsigned char)o->buf[i] < ' ' || o->buf[i] == 0x7f)
			o->buf[i] = ' ';
}

int ctlproto_out_end(struct ctlproto_out *o)
{
	if (o->error)
		return o->error;
	/* buf has room for the newline beyond CTLPROTO_LINE_MAX */
	o->buf[o->len++] = '\n';
	o->buf[o->len] = '\0';
	return (int)o->len;
}
