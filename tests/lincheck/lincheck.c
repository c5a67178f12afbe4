/* lincheck: the linearizability checker behind kf-lincheck (lincheck.h).
 *
 * The model is a map of independent registers: every key starts with no
 * value ("-"), put sets it, del clears it, get returns it.  Because keys are
 * independent, a history is linearizable iff each key's sub-history is
 * (Herlihy & Wing's locality; Porcupine calls the split P-compositionality),
 * so each key is checked alone.  Within a key:
 *
 *  1. fail operations and reads that did not complete ok are dropped: the
 *     former did not happen, the latter tell nothing;
 *  2. each info (indeterminate) write is bounded or dropped, see
 *     reduce_key() for why that is sound;
 *  3. the sub-history is cut at quiescent points (instants where no
 *     operation is pending).  Nothing can be linearized across such a point,
 *     so the set of states possible there summarises everything before it;
 *     that set is carried from one segment to the next;
 *  4. each segment is searched with the Wing-Gong algorithm as Lowe refined
 *     it (an event list from which linearized operations are lifted, with a
 *     memo of the (linearized set, state) configurations already explored),
 *     from every possible start state at once, collecting every reachable
 *     end state.  A segment with no reachable end state is a violation.
 *
 * Clients of a real service keep little concurrency per key, so segments
 * are a handful of operations and 10^6 operations take seconds.  Strings
 * (clients, keys, values, masters) are interned once; an operation is 40
 * bytes. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "tests/lincheck/lincheck.h"

#define TOKEN_MAX    1024
#define NONE         UINT32_MAX
#define NIL          0u /* string id of "-", interned first */
#define ST_CHUNK     (1u << 20)
#define MAX_FILES    65535u
#define MINIMISE_MAX 20 /* violations minimised; later ones show their segment */

/* ------------------------------------------------------------ strings */

struct strtab {
	char **chunks;
	size_t nchunks;
	size_t chunk_used;
	const char **str; /* id -> string */
	uint32_t *hash;   /* id -> hash, to rehash without rereading */
	uint32_t n, cap;
	uint32_t *slot; /* open addressing: 0 empty, else id + 1 */
	uint32_t nslot; /* a power of two, at least twice n */
};

static uint32_t str_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static int st_grow_slots(struct strtab *t)
{
	uint32_t nn = t->nslot ? t->nslot * 2 : 1024;
	uint32_t *ns, id, i;

	ns = calloc(nn, sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	for (id = 0; id < t->n; id++) {
		for (i = t->hash[id] & (nn - 1); ns[i]; i = (i + 1) & (nn - 1))
			;
		ns[i] = id + 1;
	}
	free(t->slot);
	t->slot = ns;
	t->nslot = nn;
	return 0;
}

/* The id of the len bytes at s, adding them if new.  Returns 0 or -ENOMEM. */
static int st_intern(struct strtab *t, const char *s, size_t len, uint32_t *ret)
{
	uint32_t h = str_hash(s, len), i, id;
	char *copy;

	if (len >= ST_CHUNK)
		return -EINVAL;
	if ((uint64_t)(t->n + 1) * 2 > t->nslot && st_grow_slots(t) < 0)
		return -ENOMEM;
	for (i = h & (t->nslot - 1); t->slot[i]; i = (i + 1) & (t->nslot - 1)) {
		id = t->slot[i] - 1;
		if (t->hash[id] == h && strncmp(t->str[id], s, len) == 0 && t->str[id][len] == 0) {
			*ret = id;
			return 0;
		}
	}
	if (t->n == t->cap) {
		uint32_t nc = t->cap ? t->cap * 2 : 1024;
		const char **nstr = realloc(t->str, nc * sizeof(*nstr));
		uint32_t *nh;

		if (!nstr)
			return -ENOMEM;
		t->str = nstr;
		nh = realloc(t->hash, nc * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		t->hash = nh;
		t->cap = nc;
	}
	if (!t->nchunks || t->chunk_used + len + 1 > ST_CHUNK) {
		char **nchunks = realloc(t->chunks, (t->nchunks + 1) * sizeof(*nchunks));

		if (!nchunks)
			return -ENOMEM;
		t->chunks = nchunks;
		t->chunks[t->nchunks] = malloc(ST_CHUNK);
		if (!t->chunks[t->nchunks])
			return -ENOMEM;
		t->nchunks++;
		t->chunk_used = 0;
	}
	copy = t->chunks[t->nchunks - 1] + t->chunk_used;
	memcpy(copy, s, len);
	copy[len] = 0;
	t->chunk_used += len + 1;
	id = t->n++;
	t->str[id] = copy;
	t->hash[id] = h;
	t->slot[i] = id + 1;
	*ret = id;
	return 0;
}

static void st_free(struct strtab *t)
{
	size_t i;

	for (i = 0; i < t->nchunks; i++)
		free(t->chunks[i]);
	free(t->chunks);
	free(t->str);
	free(t->hash);
	free(t->slot);
}

/* ------------------------------------------------------------ history */

struct lc_op {
	uint64_t invoke, complete;
	uint32_t client, key, value, master; /* string ids */
	uint32_t line;
	uint16_t file;
	uint8_t op, result;
};

struct lc_history {
	struct strtab st;
	struct lc_op *ops;
	size_t n, cap;
	char **files;
	size_t nfiles;
	unsigned added; /* lines given by lc_history_add() */
};

int lc_history_new(struct lc_history **ret)
{
	struct lc_history *h = calloc(1, sizeof(*h));
	uint32_t id;

	if (!h)
		return -ENOMEM;
	/* "-" gets id 0 (NIL): the state "no value". */
	if (st_intern(&h->st, "-", 1, &id) < 0) {
		free(h);
		return -ENOMEM;
	}
	*ret = h;
	return 0;
}

struct lc_history *lc_history_free(struct lc_history *h)
{
	size_t i;

	if (!h)
		return NULL;
	st_free(&h->st);
	free(h->ops);
	for (i = 0; i < h->nfiles; i++)
		free(h->files[i]);
	free(h->files);
	free(h);
	return NULL;
}

size_t lc_history_size(const struct lc_history *h)
{
	return h ? h->n : 0;
}

static int add_file(struct lc_history *h, const char *name, uint16_t *ret)
{
	char **nf;

	if (h->nfiles >= MAX_FILES)
		return -E2BIG;
	nf = realloc(h->files, (h->nfiles + 1) * sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	h->files = nf;
	h->files[h->nfiles] = strdup(name);
	if (!h->files[h->nfiles])
		return -ENOMEM;
	*ret = (uint16_t)h->nfiles++;
	return 0;
}

/* NULL if s is a token the format can carry, else why not. */
static const char *token_problem(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return "is empty";
	if (len > TOKEN_MAX)
		return "is longer than 1024 bytes";
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
			return "has a space or a control byte";
	return NULL;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return 0;
}

/* Validate one operation and append it.  Every check of a single line is
 * here, shared by the loader and lc_history_add(). */
static int add_op(struct lc_history *h, uint16_t file, unsigned line, const char *client,
                  enum hist_op op, const char *key, const char *value, uint64_t inv, uint64_t cmp,
                  enum hist_result res, const char *master, char *err, size_t errlen)
{
	const char *names[4] = {"CLIENT", "KEY", "VALUE", "MASTER"};
	const char *toks[4] = {client, key, value, master};
	struct lc_op *o;
	uint32_t ids[4];
	const char *why;
	int i, r;

	for (i = 0; i < 4; i++) {
		why = token_problem(toks[i], strlen(toks[i]));
		if (why) {
			errbuf_set(err, errlen, "%s:%u: %s %s", h->files[file], line, names[i],
			           why);
			return -EINVAL;
		}
	}
	if (cmp < inv) {
		errbuf_set(err, errlen, "%s:%u: complete %" PRIu64 " < invoke %" PRIu64,
		           h->files[file], line, cmp, inv);
		return -EINVAL;
	}
	if (op == HIST_PUT && strcmp(value, "-") == 0) {
		errbuf_set(err, errlen, "%s:%u: put without a value", h->files[file], line);
		return -EINVAL;
	}
	if (op == HIST_DEL && strcmp(value, "-") != 0) {
		errbuf_set(err, errlen, "%s:%u: del with a value ('%s'; a del carries \"-\")",
		           h->files[file], line, value);
		return -EINVAL;
	}
	for (i = 0; i < 4; i++) {
		r = st_intern(&h->st, toks[i], strlen(toks[i]), &ids[i]);
		if (r < 0)
			return r;
	}
	if (h->n == h->cap) {
		size_t nc = h->cap ? h->cap * 2 : 4096;
		struct lc_op *no = realloc(h->ops, nc * sizeof(*no));

		if (!no)
			return -ENOMEM;
		h->ops = no;
		h->cap = nc;
	}
	o = &h->ops[h->n++];
	o->invoke = inv;
	o->complete = cmp;
	o->client = ids[0];
	o->key = ids[1];
	o->value = ids[2];
	o->master = ids[3];
	o->line = line;
	o->file = file;
	o->op = (uint8_t)op;
	o->result = (uint8_t)res;
	return 0;
}

/* One line (without its newline; s[len] is writable).  Comment and empty
 * lines are skipped; "# kfhistory N" must name version 1. */
static int load_line(struct lc_history *h, uint16_t file, unsigned line, char *s, size_t len,
                     char *err, size_t errlen)
{
	const char *fname = h->files[file];
	static const char *const fields[] = {"CLIENT",    "OP",          "KEY",    "VALUE",
	                                     "INVOKE_US", "COMPLETE_US", "RESULT", "MASTER"};
	char *f[8];
	size_t nf = 0, i = 0, start;
	uint64_t inv, cmp;
	enum hist_op op;
	enum hist_result res;
	int r;

	while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	s[len] = 0;
	if (len == 0)
		return 0;
	if (s[0] == '#') {
		if (strncmp(s, "# kfhistory", 11) == 0) {
			const char *v = s + 11;

			while (*v == ' ' || *v == '\t')
				v++;
			if (strcmp(v, "1") != 0) {
				errbuf_set(err, errlen,
				           "%s:%u: history version '%s' is not supported (only 1)",
				           fname, line, v);
				return -EINVAL;
			}
		}
		return 0;
	}
	while (i < len) {
		while (i < len && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && s[i] != ' ' && s[i] != '\t')
			i++;
		if (nf < 8)
			f[nf] = s + start;
		nf++;
		if (i < len)
			s[i++] = 0;
	}
	if (nf != 8) {
		errbuf_set(err, errlen,
		           "%s:%u: %zu fields, expected 8 (CLIENT OP KEY VALUE INVOKE_US "
		           "COMPLETE_US RESULT MASTER)",
		           fname, line, nf);
		return -EINVAL;
	}
	if (strcmp(f[1], "put") == 0)
		op = HIST_PUT;
	else if (strcmp(f[1], "get") == 0)
		op = HIST_GET;
	else if (strcmp(f[1], "del") == 0)
		op = HIST_DEL;
	else {
		errbuf_set(err, errlen, "%s:%u: unknown op '%.64s' (put, get or del)", fname, line,
		           f[1]);
		return -EINVAL;
	}
	if (strcmp(f[6], "ok") == 0)
		res = HIST_OK;
	else if (strcmp(f[6], "fail") == 0)
		res = HIST_FAIL;
	else if (strcmp(f[6], "info") == 0)
		res = HIST_INFO;
	else {
		errbuf_set(err, errlen, "%s:%u: unknown result '%.64s' (ok, fail or info)", fname,
		           line, f[6]);
		return -EINVAL;
	}
	for (i = 4; i <= 5; i++) {
		r = parse_u64(f[i], i == 4 ? &inv : &cmp);
		if (r < 0) {
			errbuf_set(err, errlen, "%s:%u: bad number '%.64s' for %s%s", fname, line,
			           f[i], fields[i], r == -ERANGE ? " (out of range)" : "");
			return -EINVAL;
		}
	}
	return add_op(h, file, line, f[0], op, f[2], f[3], inv, cmp, res, f[7], err, errlen);
}

int lc_history_load(struct lc_history *h, const char *path, char *err, size_t errlen)
{
	FILE *fp = NULL;
	char *buf = NULL;
	size_t cap = 0, before = h->n;
	unsigned line = 0;
	uint16_t file;
	ssize_t len;
	int r;

	r = add_file(h, strcmp(path, "-") == 0 ? "(stdin)" : path, &file);
	if (r < 0) {
		errbuf_set(err, errlen, "%s: %s", path, strerror(-r));
		goto out;
	}
	fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	if (!fp) {
		r = -errno;
		errbuf_set(err, errlen, "%s: %s", path, strerror(-r));
		goto out;
	}
	while ((len = getline(&buf, &cap, fp)) >= 0) {
		line++;
		r = load_line(h, file, line, buf, (size_t)len, err, errlen);
		if (r < 0)
			goto out;
	}
	if (ferror(fp)) {
		r = -EIO;
		errbuf_set(err, errlen, "%s: read error", path);
		goto out;
	}
	r = 0;
out:
	if (r < 0) {
		if (r == -ENOMEM)
			errbuf_set(err, errlen, "%s: out of memory", path);
		h->n = before;
	}
	if (fp && fp != stdin)
		(void)fclose(fp);
	free(buf);
	return r;
}

int lc_history_load_string(struct lc_history *h, const char *name, const char *text, char *err,
                           size_t errlen)
{
	char *buf = NULL;
	size_t cap = 0, before = h->n, len;
	const char *p = text, *nl;
	unsigned line = 0;
	uint16_t file;
	int r;

	r = add_file(h, name, &file);
	if (r < 0)
		goto out;
	while (*p) {
		nl = strchr(p, '\n');
		len = nl ? (size_t)(nl - p) : strlen(p);
		if (len + 1 > cap) {
			char *nb = realloc(buf, len + 1);

			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = len + 1;
		}
		memcpy(buf, p, len);
		line++;
		r = load_line(h, file, line, buf, len, err, errlen);
		if (r < 0)
			goto out;
		p += len + (nl ? 1 : 0);
	}
	r = 0;
out:
	if (r < 0)
		h->n = before;
	free(buf);
	return r;
}

int lc_history_add(struct lc_history *h, const char *client, enum hist_op op, const char *key,
                   const char *value, uint64_t invoke_us, uint64_t complete_us,
                   enum hist_result result, const char *master, char *err, size_t errlen)
{
	uint16_t file;
	int r;

	if (!client || !key || (unsigned)op > HIST_DEL || (unsigned)result > HIST_INFO) {
		errbuf_set(err, errlen, "missing client or key, or bad op or result");
		return -EINVAL;
	}
	/* Added operations all belong to one pseudo-file, numbered in order. */
	if (h->added == 0) {
		r = add_file(h, "(added)", &file);
		if (r < 0)
			return r;
		h->added = (unsigned)file + 1;
	}
	file = (uint16_t)(h->added - 1);
	return add_op(h, file, (unsigned)h->n + 1, client, op, key, value ? value : "-", invoke_us,
	              complete_us, result, master ? master : "-", err, errlen);
}

/* ------------------------------------------------------------ search */

/* An operation as the search sees it: eff is the instant by which it took
 * effect (its completion, or the bound reduce_key() gives an info write). */
struct wop {
	uint64_t inv, eff;
	uint32_t val; /* string id; NIL for none */
	uint32_t src; /* index into the history */
	uint8_t kind; /* enum hist_op */
	uint8_t optional;
};

struct ent {
	uint64_t t;
	uint32_t op;
	uint32_t prev, next, match;
	uint8_t call;
};

struct frame {
	uint32_t ent;   /* the call entry lifted */
	uint32_t state; /* the state before */
	uint32_t fire;  /* the optional del fired with it, or NONE */
	uint32_t kind;  /* enum frame_kind */
};

struct ctx {
	struct lc_history *h;
	uint64_t max_configs;
	size_t minimise_ops;
	struct lc_stats *stats;
	int counting; /* the main pass counts segments; minimising does not */

	/* Per string id scratch of the key being checked, valid where
	 * stamp[id] == gen. */
	uint32_t *stamp, gen;
	uint64_t *rmax;   /* latest completion + 1 of an ok read of the value */
	uint32_t *rfirst; /* the ok reads of the value: a chain through rnext */
	uint32_t *rnext;  /* per op of the key being reduced, or NONE */
	size_t rnext_cap;
	uint32_t *writer; /* the put (not fail) of the value, or NONE */

	struct ent *ent;
	size_t ent_cap;
	uint64_t *lin;
	size_t lin_cap;
	struct frame *stack;
	size_t stack_cap;
	uint32_t *bit; /* an op's bit in lin: optional dels first */
	size_t bit_cap;

	/* The memo: variable-length entries, see cache_add(). */
	uint64_t *carena;
	size_t carena_cap, carena_used; /* words */
	uint32_t *cslot;                /* 0 empty, else arena offset + 1 */
	size_t cslot_cap, ncslot, ncache;
	uint64_t configs;

	/* End states of the run, deduplicated through emark[id] == egen. */
	uint32_t *emark, egen;
	uint32_t *endv;
	size_t nend, end_cap;
};

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	size_t nc = *cap ? *cap : 16;
	void *np;

	if (need <= *cap)
		return 0;
	while (nc < need)
		nc *= 2;
	np = realloc(*p, nc * size);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = nc;
	return 0;
}

static int end_add(struct ctx *c, uint32_t s)
{
	if (c->emark[s] == c->egen)
		return 0;
	c->emark[s] = c->egen;
	if (grow((void **)&c->endv, &c->end_cap, c->nend + 1, sizeof(*c->endv)) < 0)
		return -ENOMEM;
	c->endv[c->nend++] = s;
	return 0;
}

static void end_reset(struct ctx *c)
{
	c->nend = 0;
	if (++c->egen == 0) {
		memset(c->emark, 0, c->h->st.n * sizeof(*c->emark));
		c->egen = 1;
	}
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dull;
	x ^= x >> 33;
	return x;
}

static void cache_reset(struct ctx *c)
{
	c->ncslot = c->cslot_cap < 64 ? c->cslot_cap : 64;
	if (c->ncslot)
		memset(c->cslot, 0, c->ncslot * sizeof(*c->cslot));
	c->ncache = 0;
	c->carena_used = 0;
}

static uint64_t cache_hash(const uint64_t *w, size_t nw)
{
	uint64_t hv = 0x9e3779b97f4a7c15ull;
	size_t i;

	for (i = 0; i < nw; i++)
		hv = mix64(hv ^ w[i]);
	return hv;
}

/* Add (linearized set, state) to the memo.  Returns 1 when new, 0 when
 * already explored, -E2BIG when the memo outgrows 32-bit offsets, -ENOMEM.
 *
 * lin holds nwo words of optional-del bits, then nwm words of the other
 * operations in invocation order.  The search linearizes those roughly in
 * order, so their set is "all up to some word, then a few bits": the key is
 * the optional words, the first word not full, the words from there to the
 * last one with a bit, and the state.  A long segment then costs a few
 * words per entry instead of one bit per operation. */
static int cache_add(struct ctx *c, const uint64_t *lin, size_t nwo, size_t nwm, uint32_t state)
{
	const uint64_t *m = lin + nwo;
	size_t lo = 0, hi, len, i, mask, off;
	uint64_t hv, *key;

	while (lo < nwm && m[lo] == UINT64_MAX)
		lo++;
	for (hi = nwm; hi > lo && m[hi - 1] == 0; hi--)
		;
	len = nwo + 3 + (hi - lo);
	if (grow((void **)&c->carena, &c->carena_cap, c->carena_used + len + 1,
	         sizeof(*c->carena)) < 0)
		return -ENOMEM;
	if (c->carena_used + len + 1 > UINT32_MAX)
		return -E2BIG;
	/* The candidate is built at the arena's end, as [len, key...], so
	 * that it can be compared with stored entries as one run of words. */
	key = c->carena + c->carena_used;
	key[0] = len;
	memcpy(key + 1, lin, nwo * sizeof(*key));
	key[1 + nwo] = lo;
	key[2 + nwo] = state;
	key[3 + nwo] = hi;
	memcpy(key + 4 + nwo, m + lo, (hi - lo) * sizeof(*key));

	if ((c->ncache + 1) * 2 > c->ncslot) {
		size_t nn = c->ncslot ? c->ncslot * 2 : 64;

		if (grow((void **)&c->cslot, &c->cslot_cap, nn, sizeof(*c->cslot)) < 0)
			return -ENOMEM;
		memset(c->cslot, 0, nn * sizeof(*c->cslot));
		c->ncslot = nn;
		for (off = 0; off < c->carena_used; off += c->carena[off] + 1) {
			hv = cache_hash(c->carena + off + 1, c->carena[off]);
			for (i = hv & (nn - 1); c->cslot[i]; i = (i + 1) & (nn - 1))
				;
			c->cslot[i] = (uint32_t)off + 1;
		}
	}
	hv = cache_hash(key + 1, len);
	mask = c->ncslot - 1;
	for (i = hv & mask; c->cslot[i]; i = (i + 1) & mask) {
		const uint64_t *old = c->carena + (c->cslot[i] - 1);

		if (old[0] == len && memcmp(old + 1, key + 1, len * sizeof(*key)) == 0)
			return 0;
	}
	c->cslot[i] = (uint32_t)c->carena_used + 1;
	c->carena_used += len + 1;
	c->ncache++;
	return 1;
}

/* The state after op from state, for the one-operation fast path and for
 * put/del/get in the search: 1 and *ns, or 0 when op cannot apply (a get
 * of another value).  An optional del is applied as "never took effect":
 * see wgl_run() for when it takes effect instead. */
static int apply(const struct wop *o, uint32_t state, uint32_t *ns)
{
	switch (o->kind) {
	case HIST_GET:
		if (o->val != state)
			return 0;
		*ns = state;
		return 1;
	case HIST_PUT:
		*ns = o->val;
		return 1;
	default:
		*ns = o->optional ? state : NIL;
		return 1;
	}
}

static int ent_cmp(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;

	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	/* Calls before returns at one instant: operations that touch are
	 * taken as concurrent, which can only accept more histories. */
	if (x->call != y->call)
		return x->call ? -1 : 1;
	return x->op < y->op ? -1 : x->op > y->op;
}

static void lift(struct ent *e, uint32_t i)
{
	uint32_t m = e[i].match;

	e[e[i].prev].next = e[i].next;
	if (e[i].next != NONE)
		e[e[i].next].prev = e[i].prev;
	e[e[m].prev].next = e[m].next;
	if (e[m].next != NONE)
		e[e[m].next].prev = e[m].prev;
}

static void unlift(struct ent *e, uint32_t i)
{
	uint32_t m = e[i].match;

	e[e[m].prev].next = m;
	if (e[m].next != NONE)
		e[e[m].next].prev = m;
	e[e[i].prev].next = i;
	if (e[i].next != NONE)
		e[e[i].next].prev = i;
}

enum frame_kind { FR_OP, FR_FIRE, FR_SKIP };

/* One segment: every state reachable at its end from any of the nstart
 * start states, into c->endv/c->nend (empty: not linearizable).  Returns 0,
 * -E2BIG past max_configs, -ENOMEM.
 *
 * Optional dels (info dels that reduce_key() kept) are not tried at every
 * place, which would branch on each of them everywhere.  If one takes
 * effect in a linearization, it can be moved to just before the first read
 * that follows it (if no read follows before the next write, it can be
 * deleted, as reduce_key() argues; moving a del later past reads of "-"
 * changes nothing they see, and it has no completion to keep it early).
 * That read returns "-"; and it only matters when the state before was a
 * value.  So an optional del "fires" only together with a read of "-" that
 * meets a value, if it may be linearized there (its call comes before the
 * first pending return in the event list, as for any candidate), choosing
 * the one due first (any would do for that read; the others stay free for
 * later).  An optional del not fired by its return is skipped there. */
static int wgl_run(struct ctx *c, const struct wop *ops, size_t n, const uint32_t *start,
                   size_t nstart)
{
	size_t nw, nwo, nwm, nopt = 0, sp = 0, s, i, j;
	struct ent *e;
	uint32_t entry, k, state, ns, x, fire;
	int r;

	end_reset(c);
	if (n == 1) {
		/* Most segments are one operation: no search needed. */
		for (s = 0; s < nstart; s++)
			if (apply(&ops[0], start[s], &ns) && (r = end_add(c, ns)) < 0)
				return r;
		return 0;
	}
	for (i = 0; i < n; i++)
		nopt += ops[i].optional;
	nwo = (nopt + 63) / 64;
	nwm = (n - nopt + 63) / 64;
	nw = nwo + nwm;
	if (grow((void **)&c->bit, &c->bit_cap, n, sizeof(*c->bit)) < 0 ||
	    grow((void **)&c->ent, &c->ent_cap, 2 * n + 1, sizeof(*c->ent)) < 0 ||
	    grow((void **)&c->lin, &c->lin_cap, nw, sizeof(*c->lin)) < 0 ||
	    grow((void **)&c->stack, &c->stack_cap, n + 1, sizeof(*c->stack)) < 0)
		return -ENOMEM;
	e = c->ent;
	e[0] = (struct ent){.op = NONE};
	for (i = 0; i < n; i++) {
		e[1 + 2 * i] = (struct ent){.t = ops[i].inv, .op = (uint32_t)i, .call = 1};
		e[2 + 2 * i] = (struct ent){.t = ops[i].eff, .op = (uint32_t)i, .call = 0};
	}
	qsort(e + 1, 2 * n, sizeof(*e), ent_cmp);
	/* Pair calls and returns: match is the return for a call, the call
	 * for a return.  The stack is free until the search starts. */
	for (i = 1; i <= 2 * n; i++) {
		if (e[i].call) {
			c->stack[e[i].op].ent = (uint32_t)i;
		} else {
			e[c->stack[e[i].op].ent].match = (uint32_t)i;
			e[i].match = c->stack[e[i].op].ent;
		}
	}
	/* Bits: optional dels in the first nwo words, the others from word
	 * nwo on, each group in invocation order. */
	for (i = 0, j = 0, x = 0; i < n; i++)
		c->bit[i] = ops[i].optional ? (uint32_t)j++ : (uint32_t)(nwo * 64 + x++);
	cache_reset(c);
	c->configs = 0;
#define LIN_SET(o)   (c->lin[c->bit[o] / 64] |= 1ull << (c->bit[o] % 64))
#define LIN_CLEAR(o) (c->lin[c->bit[o] / 64] &= ~(1ull << (c->bit[o] % 64)))
	for (s = 0; s < nstart; s++) {
		for (i = 0; i <= 2 * n; i++) {
			e[i].prev = i ? (uint32_t)i - 1 : NONE;
			e[i].next = i < 2 * n ? (uint32_t)i + 1 : NONE;
		}
		memset(c->lin, 0, nw * sizeof(*c->lin));
		state = start[s];
		entry = e[0].next;
		k = 0;
		sp = 0;
		for (;;) {
			const struct wop *o;
			uint32_t op, callent;
			enum frame_kind kind;

			if (e[0].next == NONE) {
				/* Everything linearized: an end state. */
				if ((r = end_add(c, state)) < 0)
					return r;
				goto backtrack;
			}
			op = e[entry].op;
			o = &ops[op];
			if (!e[entry].call && !o->optional)
				goto backtrack;
			fire = NONE;
			if (!e[entry].call) {
				/* An optional del still pending at its return: it
				 * never took effect. */
				kind = FR_SKIP;
				callent = e[entry].match;
				ns = state;
			} else if (k > 0 || (o->kind == HIST_DEL && o->optional)) {
				entry = e[entry].next;
				k = 0;
				continue;
			} else if (apply(o, state, &ns)) {
				kind = FR_OP;
				callent = entry;
			} else if (o->kind == HIST_GET && o->val == NIL) {
				/* A read of "-" meeting a value: fire the pending
				 * optional del due first, if one was invoked. */
				for (x = e[0].next; x != NONE && e[x].call; x = e[x].next)
					if (ops[e[x].op].optional &&
					    (fire == NONE ||
					     ops[e[x].op].eff < ops[e[fire].op].eff))
						fire = x;
				if (fire == NONE) {
					entry = e[entry].next;
					continue;
				}
				kind = FR_FIRE;
				callent = entry;
				ns = NIL;
			} else {
				entry = e[entry].next;
				continue;
			}
			LIN_SET(op);
			if (fire != NONE)
				LIN_SET(e[fire].op);
			r = cache_add(c, c->lin, nwo, nwm, ns);
			if (r < 0)
				return r;
			if (r == 0) {
				LIN_CLEAR(op);
				if (fire != NONE)
					LIN_CLEAR(e[fire].op);
				if (kind == FR_SKIP)
					goto backtrack;
				entry = e[entry].next;
				continue;
			}
			if (++c->configs > c->max_configs)
				return -E2BIG;
			c->stack[sp++] = (struct frame){callent, state, fire, (uint32_t)kind};
			if (fire != NONE)
				lift(e, fire);
			lift(e, callent);
			state = ns;
			entry = e[0].next;
			k = 0;
			continue;
		backtrack:
			if (sp == 0)
				break;
			sp--;
			entry = c->stack[sp].ent;
			state = c->stack[sp].state;
			unlift(e, entry);
			LIN_CLEAR(e[entry].op);
			if (c->stack[sp].fire != NONE) {
				unlift(e, c->stack[sp].fire);
				LIN_CLEAR(e[c->stack[sp].fire].op);
			}
			/* A skip was forced at a return: nothing else to try
			 * there.  Otherwise try the next candidate. */
			if (c->stack[sp].kind == FR_SKIP)
				goto backtrack;
			k = 1;
		}
	}
#undef LIN_SET
#undef LIN_CLEAR
	return 0;
}

/* Check ops (sorted by invocation) from the states in *cur.  Returns 0 when
 * linearizable (*cur then holds every possible end state), 1 on a violation
 * (*fail_a..*fail_b is the segment where the states ran out and *cur holds
 * its start states), -E2BIG past max_configs in one segment, -ENOMEM.  *cur
 * is the caller's buffer of *curcap states and may be reallocated. */
static int check_ops(struct ctx *c, const struct wop *ops, size_t n, uint32_t **cur, size_t *ncur,
                     size_t *curcap, size_t *fail_a, size_t *fail_b)
{
	size_t i = 0, j;
	uint64_t maxe;
	int r;

	while (i < n) {
		/* A quiescent point falls before op j when every op before it
		 * took effect strictly before j was invoked. */
		maxe = ops[i].eff;
		for (j = i + 1; j < n && ops[j].inv <= maxe; j++)
			if (ops[j].eff > maxe)
				maxe = ops[j].eff;
		if (c->counting) {
			c->stats->segments++;
			if (j - i > c->stats->max_segment)
				c->stats->max_segment = j - i;
		}
		r = wgl_run(c, ops + i, j - i, *cur, *ncur);
		if (c->counting)
			c->stats->configs += c->configs;
		c->configs = 0;
		if (r < 0)
			return r;
		if (c->nend == 0) {
			*fail_a = i;
			*fail_b = j;
			return 1;
		}
		if (grow((void **)cur, curcap, c->nend, sizeof(**cur)) < 0)
			return -ENOMEM;
		memcpy(*cur, c->endv, c->nend * sizeof(**cur));
		*ncur = c->nend;
		i = j;
	}
	return 0;
}

/* ------------------------------------------------------------ report */

struct viol_store {
	struct lc_violation v;
	struct lc_event *ev;
	const char **starts;
	struct lc_event *wev;
	const struct lc_event **wptr;
};

struct lc_report {
	enum lc_verdict verdict;
	struct lc_stats stats;
	struct viol_store *viol;
	size_t nviol, viol_cap;
};

const char *lc_verdict_name(enum lc_verdict v)
{
	switch (v) {
	case LC_LINEARIZABLE:
		return "linearizable";
	case LC_VIOLATION:
		return "violation";
	case LC_UNKNOWN:
		return "unknown";
	}
	return "?";
}

static void fill_event(const struct lc_history *h, const struct lc_op *o, const struct wop *w,
                       struct lc_event *ev)
{
	ev->client = h->st.str[o->client];
	ev->key = h->st.str[o->key];
	ev->value = h->st.str[o->value];
	ev->master = h->st.str[o->master];
	ev->op = (enum hist_op)o->op;
	ev->result = (enum hist_result)o->result;
	ev->invoke_us = o->invoke;
	ev->complete_us = o->complete;
	ev->effect_by_us = w ? w->eff : o->complete;
	ev->optional = w ? w->optional : 0;
	ev->file = h->files[o->file];
	ev->line = o->line;
}

/* Record a violation from the window ops[0..n) (those with keep[i]) and
 * its start states. */
static int add_violation(struct ctx *c, struct lc_report *rep, uint32_t key, const struct wop *ops,
                         size_t n, const uint8_t *keep, size_t segment_ops, const uint32_t *start,
                         size_t nstart)
{
	const struct lc_history *h = c->h;
	struct viol_store *vs;
	size_t i, m = 0;

	if (grow((void **)&rep->viol, &rep->viol_cap, rep->nviol + 1, sizeof(*rep->viol)) < 0)
		return -ENOMEM;
	vs = &rep->viol[rep->nviol];
	memset(vs, 0, sizeof(*vs));
	for (i = 0; i < n; i++)
		m += keep[i];
	vs->ev = calloc(m ? m : 1, sizeof(*vs->ev));
	vs->starts = calloc(nstart ? nstart : 1, sizeof(*vs->starts));
	vs->wev = calloc(nstart ? nstart : 1, sizeof(*vs->wev));
	vs->wptr = calloc(nstart ? nstart : 1, sizeof(*vs->wptr));
	if (!vs->ev || !vs->starts || !vs->wev || !vs->wptr) {
		free(vs->ev);
		free(vs->starts);
		free(vs->wev);
		free(vs->wptr);
		return -ENOMEM;
	}
	for (i = 0, m = 0; i < n; i++)
		if (keep[i])
			fill_event(h, &h->ops[ops[i].src], &ops[i], &vs->ev[m++]);
	for (i = 0; i < nstart; i++) {
		vs->starts[i] = h->st.str[start[i]];
		/* writer[] still describes this key: the caller is in it. */
		if (start[i] != NIL && c->stamp[start[i]] == c->gen &&
		    c->writer[start[i]] != NONE) {
			fill_event(h, &h->ops[c->writer[start[i]]], NULL, &vs->wev[i]);
			vs->wptr[i] = &vs->wev[i];
		}
	}
	vs->v.key = h->st.str[key];
	vs->v.segment_ops = segment_ops;
	vs->v.nops = m;
	vs->v.ops = vs->ev;
	vs->v.nstart = nstart;
	vs->v.start_states = vs->starts;
	vs->v.start_writers = vs->wptr;
	rep->nviol++;
	return 0;
}

/* Bound or drop the info writes of sub[0..*n) again from the reads left in
 * it, as reduce_key() does for a whole key, so that a trial subset is
 * judged as a history of its own: an info put kept only for a read that was
 * removed must go with that read. */
static void rereduce(const struct ctx *c, struct wop *sub, size_t *n)
{
	size_t i, j, m = 0;

	for (i = 0; i < *n; i++) {
		struct wop *w = &sub[i];
		uint64_t by = w->kind == HIST_PUT ? UINT64_MAX : 0;
		int found = 0;

		if (c->h->ops[w->src].result == HIST_INFO) {
			for (j = 0; j < *n; j++) {
				if (sub[j].kind != HIST_GET || sub[j].val != w->val ||
				    sub[j].eff < w->inv)
					continue;
				found = 1;
				if (w->kind == HIST_PUT ? sub[j].eff < by : sub[j].eff > by)
					by = sub[j].eff;
			}
			if (!found)
				continue;
			w->eff = by;
		}
		sub[m++] = *w;
	}
	*n = m;
}

/* Greedily shrink the window ops[0..n), failing from start[], to a
 * 1-minimal failing subset in keep[].  Only removals that keep a
 * linearizable history linearizable are tried, so that what remains fails
 * only if the window did:
 *  - a get alone (a read constrains, never explains);
 *  - a put with every read of its value (values are unique per key, so in
 *    a linearization of the rest nothing else needed it);
 *  - a del with every read of "-" (which reads it explained is not known).
 * A trial that hits the search limit counts as "no longer fails". */
static int minimise(struct ctx *c, const struct wop *ops, size_t n, const uint32_t *start,
                    size_t nstart, uint8_t *keep)
{
	struct wop *sub = NULL;
	uint8_t *rm = NULL;
	uint32_t *cur = NULL;
	size_t curcap = 0, ncur, m, i, j, a, b;
	int changed, pass, r;

	sub = malloc(n * sizeof(*sub));
	rm = malloc(n);
	if (!sub || !rm) {
		r = -ENOMEM;
		goto out;
	}
	memset(keep, 1, n);
	for (pass = 0; pass < 4; pass++) {
		changed = 0;
		for (i = 0; i < n; i++) {
			if (!keep[i])
				continue;
			for (j = 0; j < n; j++) {
				uint32_t dep = ops[i].kind == HIST_PUT ? ops[i].val : NIL;

				rm[j] = keep[j] &&
				        (j == i || (ops[i].kind != HIST_GET &&
				                    ops[j].kind == HIST_GET && ops[j].val == dep));
			}
			for (j = 0, m = 0; j < n; j++)
				if (keep[j] && !rm[j])
					sub[m++] = ops[j];
			rereduce(c, sub, &m);
			if (grow((void **)&cur, &curcap, nstart, sizeof(*cur)) < 0) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(cur, start, nstart * sizeof(*cur));
			ncur = nstart;
			r = check_ops(c, sub, m, &cur, &ncur, &curcap, &a, &b);
			if (r == -ENOMEM)
				goto out;
			if (r == 1) {
				for (j = 0; j < n; j++)
					keep[j] &= !rm[j];
				changed = 1;
			}
		}
		if (!changed)
			break;
	}
	r = 0;
out:
	free(sub);
	free(rm);
	free(cur);
	return r;
}

/* The violation found in ops[fa..fb) of a key (start states start[]):
 * widen the window back over earlier segments while it stays within
 * minimise_ops, so the counterexample can show the writes that led there,
 * then minimise it. */
static int report_violation(struct ctx *c, struct lc_report *rep, uint32_t key,
                            const struct wop *ops, size_t fa, size_t fb, const uint32_t *start,
                            size_t nstart)
{
	uint32_t *cur = NULL;
	uint8_t *keep = NULL;
	struct wop *sub = NULL;
	size_t curcap = 0, ncur, w = fa, i, j, a, b;
	uint64_t maxe;
	int r;

	keep = malloc(fb - fa + 1);
	if (!keep)
		return -ENOMEM;
	if (rep->nviol >= MINIMISE_MAX || fb - fa > c->minimise_ops) {
		memset(keep, 1, fb - fa);
		r = add_violation(c, rep, key, ops + fa, fb - fa, keep, fb - fa, start, nstart);
		goto out;
	}
	/* The earliest quiescent point w with fb - w <= minimise_ops. */
	for (i = 0; i < fa; i = j) {
		maxe = ops[i].eff;
		for (j = i + 1; j < fa && ops[j].inv <= maxe; j++)
			if (ops[j].eff > maxe)
				maxe = ops[j].eff;
		if (fb - i <= c->minimise_ops) {
			w = i;
			break;
		}
	}
	/* The states possible at w: the main pass knew them, recompute. */
	if (grow((void **)&cur, &curcap, 1, sizeof(*cur)) < 0) {
		r = -ENOMEM;
		goto out;
	}
	cur[0] = NIL;
	ncur = 1;
	r = check_ops(c, ops, w, &cur, &ncur, &curcap, &a, &b);
	if (r != 0) {
		/* Cannot be 1 (the main pass passed this prefix); on the search
		 * limit fall back to the bare segment. */
		if (r < 0 && r != -E2BIG)
			goto out;
		memset(keep, 1, fb - fa);
		r = add_violation(c, rep, key, ops + fa, fb - fa, keep, fb - fa, start, nstart);
		goto out;
	}
	free(keep);
	keep = malloc(fb - w);
	if (!keep) {
		r = -ENOMEM;
		goto out;
	}
	r = minimise(c, ops + w, fb - w, cur, ncur, keep);
	if (r < 0)
		goto out;
	/* Show the counterexample as it was judged: re-reduced on its own. */
	sub = malloc((fb - w) * sizeof(*sub));
	if (!sub) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0, j = 0; i < fb - w; i++)
		if (keep[i])
			sub[j++] = ops[w + i];
	rereduce(c, sub, &j);
	memset(keep, 1, j);
	r = add_violation(c, rep, key, sub, j, keep, fb - fa, cur, ncur);
out:
	free(cur);
	free(keep);
	free(sub);
	return r;
}

/* ------------------------------------------------------------ per key */

static void touch(struct ctx *c, uint32_t v)
{
	if (c->stamp[v] != c->gen) {
		c->stamp[v] = c->gen;
		c->rmax[v] = 0;
		c->writer[v] = NONE;
		c->rfirst[v] = NONE;
	}
}

/* Turn a key's operations (indices into the history, sorted by
 * invocation) into what the search needs, in *out.
 *
 * fail operations and reads that did not complete ok are dropped.  An info
 * write m (state s: its value for a put, "-" for a del; invoked at I) may
 * have taken effect at any instant after I, or never; its recorded
 * completion is only when its client gave up.  Only ok reads of s that
 * completed at or after I can follow m; let C be the latest completion
 * among them.
 *
 *  - Take any linearization in which m takes effect at a point p later than
 *    C (or at all, when there is no such read).  Every read of s lies at or
 *    before its completion, hence before p, so no read follows m before the
 *    next write: each would return s.  Writes are blind (the state after one
 *    does not depend on the state before), so deleting m leaves a valid
 *    linearization.  Hence, without losing any linearization, m is dropped
 *    when there is no such read, and otherwise may take effect only by C.
 *  - A put's value is unique to it on this key (checked), so every read of
 *    s can only be explained by m and must follow it: m takes effect by the
 *    earliest completion C' <= C of those reads, and it must take effect
 *    (if it never did, those reads have no writer at all and no
 *    linearization exists either way).  A kept info put is thus an ordinary
 *    operation on [I, C'].  Using C' rather than C matters: the final read
 *    of a key often returns a value written long before, and an interval
 *    reaching it would merge the key's whole history into one segment.
 *  - A del's state "-" is also the initial state and that of every other
 *    del, so its reads (initial-state reads among them) may need no m at
 *    all.  A kept info del stays optional: it takes effect by C, or never.
 *    Forcing it would be wrong: put x ok [0,5], get x ok [12,13], get - ok
 *    [0,20] (read before the put), info del invoked at 10, get x ok [21,25]
 *    is linearizable with the del never done, but not with the del forced
 *    before 20.  Nor is the earliest read a bound: m may explain a later
 *    read of "-" than the first.
 *
 * Returns the number of ops in *out, or -EINVAL (a value written twice:
 * err) or -ENOMEM. */
static int reduce_key(struct ctx *c, const uint32_t *idx, size_t n, struct wop **out,
                      size_t *outcap, char *err, size_t errlen)
{
	const struct lc_history *h = c->h;
	const struct lc_op *o;
	struct wop *w;
	size_t i, m = 0;

	if (++c->gen == 0) {
		memset(c->stamp, 0, h->st.n * sizeof(*c->stamp));
		c->gen = 1;
	}
	if (grow((void **)&c->rnext, &c->rnext_cap, n ? n : 1, sizeof(*c->rnext)) < 0)
		return -ENOMEM;
	touch(c, NIL);
	for (i = 0; i < n; i++) {
		o = &h->ops[idx[i]];
		if (o->result == HIST_FAIL)
			continue;
		touch(c, o->value);
		if (o->op == HIST_GET && o->result == HIST_OK) {
			if (o->complete + 1 > c->rmax[o->value])
				c->rmax[o->value] = o->complete + 1;
			c->rnext[i] = c->rfirst[o->value];
			c->rfirst[o->value] = (uint32_t)i;
		} else if (o->op == HIST_PUT) {
			if (c->writer[o->value] != NONE) {
				const struct lc_op *first = &h->ops[c->writer[o->value]];

				errbuf_set(
				        err, errlen,
				        "%s:%u: value '%s' of key '%s' is written again (first at "
				        "%s:%u); values must be unique per key",
				        h->files[o->file], o->line, h->st.str[o->value],
				        h->st.str[o->key], h->files[first->file], first->line);
				return -EINVAL;
			}
			c->writer[o->value] = idx[i];
		}
	}
	if (grow((void **)out, outcap, n ? n : 1, sizeof(**out)) < 0)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		o = &h->ops[idx[i]];
		if (o->result == HIST_FAIL || (o->op == HIST_GET && o->result != HIST_OK))
			continue;
		w = &(*out)[m];
		w->inv = o->invoke;
		w->eff = o->complete;
		w->val = o->op == HIST_DEL ? NIL : o->value;
		w->src = idx[i];
		w->kind = o->op;
		w->optional = 0;
		if (o->result == HIST_INFO && o->op == HIST_PUT) {
			uint64_t by = UINT64_MAX;
			uint32_t j;

			for (j = c->rfirst[w->val]; j != NONE; j = c->rnext[j])
				if (h->ops[idx[j]].complete >= o->invoke &&
				    h->ops[idx[j]].complete < by)
					by = h->ops[idx[j]].complete;
			if (by == UINT64_MAX) {
				c->stats->info_dropped++;
				continue;
			}
			w->eff = by;
		} else if (o->result == HIST_INFO) {
			if (c->rmax[NIL] < o->invoke + 1) {
				c->stats->info_dropped++;
				continue;
			}
			w->eff = c->rmax[NIL] - 1;
			w->optional = 1;
		}
		m++;
	}
	return (int)m;
}

struct sortent {
	uint64_t inv, cmp;
	uint32_t idx;
};

static int sortent_cmp(const void *a, const void *b)
{
	const struct sortent *x = a, *y = b;

	if (x->inv != y->inv)
		return x->inv < y->inv ? -1 : 1;
	if (x->cmp != y->cmp)
		return x->cmp < y->cmp ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int lc_check(struct lc_history *h, const struct lc_options *opt, struct lc_report **ret, char *err,
             size_t errlen)
{
	struct lc_report *rep = NULL;
	struct ctx c = {0};
	uint32_t *kstart = NULL, *order = NULL, *idx = NULL, *cur = NULL;
	struct sortent *se = NULL;
	struct wop *wops = NULL;
	size_t secap = 0, idxcap = 0, wcap = 0, curcap = 0, ncur, nst, i, k, g, a, b;
	int r, nw;

	if (!h || !ret)
		return -EINVAL;
	nst = h->st.n;
	rep = calloc(1, sizeof(*rep));
	kstart = calloc(nst + 1, sizeof(*kstart));
	order = malloc((h->n ? h->n : 1) * sizeof(*order));
	c.stamp = calloc(nst, sizeof(*c.stamp));
	c.rmax = malloc(nst * sizeof(*c.rmax));
	c.writer = malloc(nst * sizeof(*c.writer));
	c.rfirst = malloc(nst * sizeof(*c.rfirst));
	c.emark = calloc(nst, sizeof(*c.emark));
	if (!rep || !kstart || !order || !c.stamp || !c.rmax || !c.writer || !c.rfirst ||
	    !c.emark) {
		r = -ENOMEM;
		goto out;
	}
	c.h = h;
	c.max_configs = opt && opt->max_configs ? opt->max_configs : LC_DEFAULT_MAX_CONFIGS;
	c.minimise_ops = opt && opt->minimise_ops ? opt->minimise_ops : LC_DEFAULT_MINIMISE_OPS;
	c.stats = &rep->stats;
	c.egen = 1;

	rep->stats.ops = h->n;
	rep->stats.first_us = h->n ? UINT64_MAX : 0;
	for (i = 0; i < h->n; i++) {
		const struct lc_op *o = &h->ops[i];

		rep->stats.ok += o->result == HIST_OK;
		rep->stats.fail += o->result == HIST_FAIL;
		rep->stats.info += o->result == HIST_INFO;
		if (o->invoke < rep->stats.first_us)
			rep->stats.first_us = o->invoke;
		kstart[o->key + 1]++;
	}
	/* Counting sort by key: kstart[k]..kstart[k+1] are key k's ops. */
	for (k = 0; k < nst; k++)
		kstart[k + 1] += kstart[k];
	for (i = 0; i < h->n; i++)
		order[kstart[h->ops[i].key]++] = (uint32_t)i;
	for (k = nst; k > 0; k--)
		kstart[k] = kstart[k - 1];
	kstart[0] = 0;

	for (k = 0; k < nst; k++) {
		g = kstart[k + 1] - kstart[k];
		if (g == 0)
			continue;
		rep->stats.keys++;
		if (grow((void **)&se, &secap, g, sizeof(*se)) < 0 ||
		    grow((void **)&idx, &idxcap, g, sizeof(*idx)) < 0) {
			r = -ENOMEM;
			goto out;
		}
		for (i = 0; i < g; i++) {
			const struct lc_op *o = &h->ops[order[kstart[k] + i]];

			se[i] = (struct sortent){o->invoke, o->complete, order[kstart[k] + i]};
		}
		qsort(se, g, sizeof(*se), sortent_cmp);
		for (i = 0; i < g; i++)
			idx[i] = se[i].idx;
		nw = reduce_key(&c, idx, g, &wops, &wcap, err, errlen);
		if (nw < 0) {
			r = nw;
			goto out;
		}
		if (grow((void **)&cur, &curcap, 1, sizeof(*cur)) < 0) {
			r = -ENOMEM;
			goto out;
		}
		cur[0] = NIL;
		ncur = 1;
		c.counting = 1;
		r = check_ops(&c, wops, (size_t)nw, &cur, &ncur, &curcap, &a, &b);
		c.counting = 0;
		if (r == -E2BIG) {
			rep->stats.undecided++;
			continue;
		}
		if (r < 0)
			goto out;
		if (r == 1) {
			uint32_t *start = malloc(ncur * sizeof(*start));

			if (!start) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(start, cur, ncur * sizeof(*start));
			r = report_violation(&c, rep, (uint32_t)k, wops, a, b, start, ncur);
			free(start);
			if (r < 0)
				goto out;
		}
	}
	rep->verdict = rep->nviol             ? LC_VIOLATION
	               : rep->stats.undecided ? LC_UNKNOWN
	                                      : LC_LINEARIZABLE;
	*ret = rep;
	rep = NULL;
	r = 0;
out:
	if (r == -ENOMEM)
		errbuf_set(err, errlen, "out of memory");
	rep = lc_report_free(rep);
	free(kstart);
	free(order);
	free(idx);
	free(se);
	free(wops);
	free(cur);
	free(c.stamp);
	free(c.rmax);
	free(c.writer);
	free(c.rfirst);
	free(c.rnext);
	free(c.emark);
	free(c.ent);
	free(c.lin);
	free(c.stack);
	free(c.bit);
	free(c.carena);
	free(c.cslot);
	free(c.endv);
	return r;
}

struct lc_report *lc_report_free(struct lc_report *r)
{
	size_t i;

	if (!r)
		return NULL;
	for (i = 0; i < r->nviol; i++) {
		free(r->viol[i].ev);
		free(r->viol[i].starts);
		free(r->viol[i].wev);
		free(r->viol[i].wptr);
	}
	free(r->viol);
	free(r);
	return NULL;
}

enum lc_verdict lc_report_verdict(const struct lc_report *r)
{
	return r->verdict;
}

const struct lc_stats *lc_report_stats(const struct lc_report *r)
{
	return &r->stats;
}

size_t lc_report_nviolations(const struct lc_report *r)
{
	return r->nviol;
}

const struct lc_violation *lc_report_violation(const struct lc_report *r, size_t i)
{
	return i < r->nviol ? &r->viol[i].v : NULL;
}

/* "+12.345678 ms": t relative to the first invocation, µs precision. */
static void fmt_rel(char *buf, size_t len, uint64_t t, uint64_t first)
{
	uint64_t d = t >= first ? t - first : 0;

	(void)snprintf(buf, len, "+%" PRIu64 ".%03" PRIu64 " ms", d / 1000, d % 1000);
}

static void print_event(const struct lc_event *ev, uint64_t first, int wc, int wv, FILE *out)
{
	char inv[32], cmp[32], eff[32];

	fmt_rel(inv, sizeof(inv), ev->invoke_us, first);
	fmt_rel(cmp, sizeof(cmp), ev->complete_us, first);
	fprintf(out,
	        "    %-*s %s %-*s %16s .. %-16s %-4s  master %s  [%" PRIu64 "..%" PRIu64
	        "] %s:%u\n",
	        wc, ev->client, hist_op_name(ev->op), wv, ev->value, inv, cmp,
	        hist_result_name(ev->result), ev->master, ev->invoke_us, ev->complete_us, ev->file,
	        ev->line);
	if (ev->result == HIST_INFO) {
		fmt_rel(eff, sizeof(eff), ev->effect_by_us, first);
		if (ev->optional)
			fprintf(out, "%*s(indeterminate: took effect by %s, or never)\n", 8 + wc,
			        "", eff);
		else
			fprintf(out, "%*s(indeterminate, but read: took effect by %s)\n", 8 + wc,
			        "", eff);
	}
}

void lc_report_print(const struct lc_report *r, size_t max_shown, FILE *out)
{
	uint64_t first = r->stats.first_us;
	size_t i, j;
	int wc, wv;

	for (i = 0; i < r->nviol && (!max_shown || i < max_shown); i++) {
		const struct lc_violation *v = &r->viol[i].v;

		wc = 1;
		wv = 1;
		for (j = 0; j < v->nops; j++) {
			if ((int)strlen(v->ops[j].client) > wc)
				wc = (int)strlen(v->ops[j].client);
			if ((int)strlen(v->ops[j].value) > wv)
				wv = (int)strlen(v->ops[j].value);
		}
		if (wc > 24)
			wc = 24;
		if (wv > 24)
			wv = 24;
		fprintf(out,
		        "VIOLATION on key '%s': no linearization (segment of %zu ops; "
		        "counterexample of %zu ops)\n",
		        v->key, v->segment_ops, v->nops);
		fprintf(out, "  possible states before it:\n");
		for (j = 0; j < v->nstart; j++) {
			const struct lc_event *wr = v->start_writers[j];

			if (!wr)
				fprintf(out, "    '%s' (no value: initial, or deleted)\n",
				        v->start_states[j]);
			else
				fprintf(out, "    '%s' (written by %s put, %s, %s:%u)\n",
				        v->start_states[j], wr->client,
				        hist_result_name(wr->result), wr->file, wr->line);
		}
		fprintf(out, "  operations (times from the first invocation):\n");
		for (j = 0; j < v->nops; j++)
			print_event(&v->ops[j], first, wc, wv, out);
	}
	if (max_shown && r->nviol > max_shown)
		fprintf(out, "(%zu more violations not shown)\n", r->nviol - max_shown);
}

void lc_report_summary(const struct lc_report *r, FILE *out)
{
	size_t i;

	fprintf(out, "lincheck: %zu ops, %zu keys, verdict ", r->stats.ops, r->stats.keys);
	if (r->verdict == LC_LINEARIZABLE) {
		fprintf(out, "linearizable\n");
		return;
	}
	if (r->verdict == LC_UNKNOWN) {
		fprintf(out, "unknown (%zu keys past the search limit)\n", r->stats.undecided);
		return;
	}
	fprintf(out, "VIOLATION (%zu key%s:", r->nviol, r->nviol == 1 ? "" : "s");
	for (i = 0; i < r->nviol && i < 5; i++)
		fprintf(out, " '%s'", r->viol[i].v.key);
	fprintf(out, "%s)\n", r->nviol > 5 ? " ..." : "");
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_event(FILE *f, const struct lc_event *ev)
{
	fprintf(f, "{\"client\": ");
	json_str(f, ev->client);
	fprintf(f, ", \"op\": \"%s\", \"value\": ", hist_op_name(ev->op));
	json_str(f, ev->value);
	fprintf(f,
	        ", \"invoke_us\": %" PRIu64 ", \"complete_us\": %" PRIu64
	        ", \"effect_by_us\": %" PRIu64 ", \"result\": \"%s\", \"master\": ",
	        ev->invoke_us, ev->complete_us, ev->effect_by_us, hist_result_name(ev->result));
	json_str(f, ev->master);
	fprintf(f, ", \"file\": ");
	json_str(f, ev->file);
	fprintf(f, ", \"line\": %u}", ev->line);
}

int lc_report_write_json(const struct lc_report *r, const char *path, char *err, size_t errlen)
{
	const struct lc_stats *s = &r->stats;
	FILE *f;
	size_t i, j;
	int rr;

	f = fopen(path, "we");
	if (!f) {
		rr = -errno;
		errbuf_set(err, errlen, "%s: %s", path, strerror(-rr));
		return rr;
	}
	fprintf(f,
	        "{\n  \"ops\": %zu,\n  \"keys\": %zu,\n  \"ok\": %zu,\n  \"fail\": %zu,\n"
	        "  \"info\": %zu,\n  \"info_dropped\": %zu,\n  \"segments\": %zu,\n"
	        "  \"max_segment\": %zu,\n  \"configs\": %" PRIu64 ",\n  \"undecided_keys\": %zu,\n"
	        "  \"verdict\": \"%s\",\n  \"violations\": [",
	        s->ops, s->keys, s->ok, s->fail, s->info, s->info_dropped, s->segments,
	        s->max_segment, s->configs, s->undecided, lc_verdict_name(r->verdict));
	for (i = 0; i < r->nviol; i++) {
		const struct lc_violation *v = &r->viol[i].v;

		fprintf(f, "%s\n    {\"key\": ", i ? "," : "");
		json_str(f, v->key);
		fprintf(f, ", \"segment_ops\": %zu, \"start_states\": [", v->segment_ops);
		for (j = 0; j < v->nstart; j++) {
			fprintf(f, "%s", j ? ", " : "");
			json_str(f, v->start_states[j]);
		}
		fprintf(f, "],\n     \"ops\": [");
		for (j = 0; j < v->nops; j++) {
			fprintf(f, "%s\n       ", j ? "," : "");
			json_event(f, &v->ops[j]);
		}
		fprintf(f, "]}");
	}
	fprintf(f, "%s]\n}\n", r->nviol ? "\n  " : "");
	if (ferror(f) | fclose(f)) {
		errbuf_set(err, errlen, "%s: write error", path);
		return -EIO;
	}
	return 0;
}
