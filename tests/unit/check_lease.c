/* Unit tests of the pure election logic in lib/lease.c: JSON <-> record,
 * the expiry clock, verdicts, the objects written, and a simulated election
 * on an in-memory store with an injected monotonic clock. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/lease.h"
#include "tests/lib/kftest.h"

#define MS(x) ((usec_t)(x)*USEC_PER_MSEC)

static cJSON *parse(const char *s)
{
	cJSON *o = cJSON_Parse(s);
	ck_assert_ptr_nonnull(o);
	return o;
}

static const char *FULL =
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
        "\"metadata\":{\"name\":\"kf\",\"namespace\":\"ns\",\"resourceVersion\":\"7\","
        "\"labels\":{\"app\":\"x\"},"
        "\"annotations\":{\"kubefence.io/lease-duration-ms\":\"2500\","
        "\"kubefence.io/incarnation\":\"abc\",\"other\":\"keep\"}},"
        "\"spec\":{\"holderIdentity\":\"node-a\",\"leaseDurationSeconds\":3,"
        "\"renewTime\":\"2026-01-01T00:00:00.000000Z\",\"leaseTransitions\":4}}";

static void cfg_init(struct lease_config *c, const char *id, const char *inc)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->identity, id);
	strcpy(c->incarnation, inc);
	c->duration = MS(4000);
	c->renew_deadline = MS(3000);
	c->retry = MS(500);
}

START_TEST(record_full)
{
	cJSON *o = parse(FULL);
	struct lease_record r;
	char err[256];

	ck_assert_int_eq(lease_record_from_json(o, &r, err, sizeof(err)), 0);
	ck_assert_str_eq(r.name, "kf");
	ck_assert_str_eq(r.resource_version, "7");
	ck_assert_str_eq(r.holder, "node-a");
	ck_assert_str_eq(r.incarnation, "abc");
	/* the exact annotation wins over the rounded spec field */
	ck_assert_int_eq(r.duration_ms, 2500);
	ck_assert_int_eq(r.transitions, 4);
	cJSON_Delete(o);
}
END_TEST

START_TEST(record_minimal)
{
	cJSON *o = parse("{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\"},"
	                 "\"spec\":{\"holderIdentity\":null}}");
	struct lease_record r;

	ck_assert_int_eq(lease_record_from_json(o, &r, NULL, 0), 0);
	ck_assert_str_eq(r.holder, "");
	ck_assert_int_eq(r.duration_ms, 0);
	ck_assert_int_eq(r.transitions, 0);
	cJSON_Delete(o);
}
END_TEST

static const char *const BAD[] = {
        "[]",
        "{}",
        "{\"metadata\":[]}",
        "{\"metadata\":{\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"kf\"}}",
        "{\"metadata\":{\"name\":5,\"resourceVersion\":\"1\"}}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\"},\"spec\":7}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\"},\"spec\":{\"holderIdentity\":1}"
        "}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\"},\"spec\":{\"leaseTransitions\":-"
        "1}}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\"},\"spec\":{\"leaseTransitions\":"
        "1.5}}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\"},\"spec\":{"
        "\"leaseDurationSeconds\":\"3\"}}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\",\"annotations\":[]}}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\",\"annotations\":"
        "{\"kubefence.io/lease-duration-ms\":\"12x\"}}}",
        "{\"metadata\":{\"name\":\"kf\",\"resourceVersion\":\"1\",\"annotations\":"
        "{\"kubefence.io/lease-duration-ms\":\"-5\"}}}",
};

START_TEST(record_bad)
{
	cJSON *o = parse(BAD[_i]);
	struct lease_record r;
	char err[256] = "";

	ck_assert_int_eq(lease_record_from_json(o, &r, err, sizeof(err)), -EBADMSG);
	ck_assert_msg(strncmp(err, "Lease: ", 7) == 0, "message '%s'", err);
	cJSON_Delete(o);
}
END_TEST

/* A watch event can arrive after the answer to our own newer write: the
 * previous holder's release, seen after our acquire, is older and must not
 * be taken for "the Lease was given up" (a spurious demotion). */
START_TEST(late_event_of_an_older_term_is_ignored)
{
	struct lease_state s;
	cJSON *ours = parse(FULL), *late = parse(FULL), *other = parse(FULL);
	cJSON *meta;

	/* ours: held by node-b, term 5; late: node-a's release of term 4 */
	meta = cJSON_GetObjectItem(ours, "metadata");
	cJSON_AddStringToObject(meta, "uid", "u-1");
	cJSON_ReplaceItemInObject(meta, "resourceVersion", cJSON_CreateString("9"));
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(ours, "spec"), "holderIdentity",
	                          cJSON_CreateString("node-b"));
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(ours, "spec"), "leaseTransitions",
	                          cJSON_CreateNumber(5));
	meta = cJSON_GetObjectItem(late, "metadata");
	cJSON_AddStringToObject(meta, "uid", "u-1");
	cJSON_ReplaceItemInObject(meta, "resourceVersion", cJSON_CreateString("8"));
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(late, "spec"), "holderIdentity",
	                          cJSON_CreateString(""));
	lease_state_init(&s);
	ck_assert_int_eq(lease_state_observe(&s, ours, MS(100), NULL, 0), 1);
	ck_assert_int_eq(lease_state_observe(&s, late, MS(200), NULL, 0), 0);
	ck_assert_str_eq(s.rec.holder, "node-b");
	ck_assert_int_eq(s.rec.transitions, 5);
	ck_assert_int_eq(s.observed_at, MS(100));
	/* the same object recreated (another uid) is news, whatever its count */
	meta = cJSON_GetObjectItem(other, "metadata");
	cJSON_AddStringToObject(meta, "uid", "u-2");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(other, "spec"), "leaseTransitions",
	                          cJSON_CreateNumber(1));
	ck_assert_int_eq(lease_state_observe(&s, other, MS(300), NULL, 0), 1);
	ck_assert_int_eq(s.rec.transitions, 1);
	cJSON_Delete(ours);
	cJSON_Delete(late);
	cJSON_Delete(other);
	lease_state_done(&s);
}
END_TEST

START_TEST(observe_restarts_clock_only_on_change)
{
	struct lease_state s;
	cJSON *o = parse(FULL);

	lease_state_init(&s);
	ck_assert_int_eq(lease_state_observe(&s, o, MS(100), NULL, 0), 1);
	ck_assert_int_eq(s.observed_at, MS(100));
	/* the same resourceVersion seen later does not restart the clock */
	ck_assert_int_eq(lease_state_observe(&s, o, MS(900), NULL, 0), 0);
	ck_assert_int_eq(s.observed_at, MS(100));
	/* a new resourceVersion does */
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(o, "metadata"), "resourceVersion",
	                          cJSON_CreateString("8"));
	ck_assert_int_eq(lease_state_observe(&s, o, MS(1200), NULL, 0), 1);
	ck_assert_int_eq(s.observed_at, MS(1200));
	/* absence is a change, and so is reappearance */
	ck_assert_int_eq(lease_state_observe(&s, NULL, MS(1300), NULL, 0), 1);
	ck_assert(s.absent);
	ck_assert_int_eq(lease_state_observe(&s, NULL, MS(1400), NULL, 0), 0);
	ck_assert_int_eq(s.observed_at, MS(1300));
	/* a malformed object leaves the state untouched */
	cJSON *bad = parse("{\"metadata\":{}}");
	ck_assert_int_eq(lease_state_observe(&s, bad, MS(1500), NULL, 0), -EBADMSG);
	ck_assert(s.absent);
	ck_assert_int_eq(s.observed_at, MS(1300));
	cJSON_Delete(bad);
	cJSON_Delete(o);
	lease_state_done(&s);
}
END_TEST

START_TEST(judge_expiry_on_monotonic_clock)
{
	struct lease_config b;
	struct lease_state s;
	usec_t exp = 0;
	cJSON *o = parse(FULL);

	cfg_init(&b, "node-b", "bbb");
	lease_state_init(&s);
	ck_assert_int_eq(lease_judge(&b, &s, 0, NULL), LEASE_UNKNOWN);
	lease_state_observe(&s, o, MS(1000), NULL, 0);
	/* our duration (4000) is longer than the holder's (2500): ours counts */
	ck_assert_int_eq(lease_judge(&b, &s, MS(1000), &exp), LEASE_HELD);
	ck_assert_int_eq(exp, MS(5000));
	ck_assert_int_eq(lease_judge(&b, &s, MS(4999), NULL), LEASE_HELD);
	ck_assert_int_eq(lease_judge(&b, &s, MS(5000), NULL), LEASE_EXPIRED);
	/* a holder promised more than our duration: wait for its promise */
	b.duration = MS(1000);
	ck_assert_int_eq(lease_judge(&b, &s, MS(3499), NULL), LEASE_HELD);
	ck_assert_int_eq(lease_judge(&b, &s, MS(3500), NULL), LEASE_EXPIRED);
	/* renewTime in the far past changes nothing: only the local clock counts */
	ck_assert_str_eq(s.rec.renew_time, "2026-01-01T00:00:00.000000Z");
	cJSON_Delete(o);
	lease_state_done(&s);
}
END_TEST

/* A parting renewal (agent.restart_grace_ms) writes its longer duration
 * both ways, and every other candidate then waits that long from when it
 * saw the record. */
START_TEST(parting_renewal_makes_others_wait)
{
	struct lease_config b;
	struct lease_state s, sb;
	cJSON *o = parse(FULL), *w;
	const cJSON *spec, *ann;

	cfg_init(&b, "node-b", "bbb");
	lease_state_init(&s);
	lease_state_init(&sb);
	lease_state_observe(&s, o, 0, NULL, 0);
	w = lease_build_parting(&s, 0, MS(30500));
	ck_assert_ptr_nonnull(w);
	spec = cJSON_GetObjectItem(w, "spec");
	ann = cJSON_GetObjectItem(cJSON_GetObjectItem(w, "metadata"), "annotations");
	/* whole seconds rounded up, exact milliseconds in the annotation */
	ck_assert_int_eq(cJSON_GetObjectItem(spec, "leaseDurationSeconds")->valueint, 31);
	ck_assert_str_eq(cJSON_GetObjectItem(ann, LEASE_ANN_DURATION)->valuestring, "30500");
	ck_assert_str_eq(cJSON_GetObjectItem(spec, "holderIdentity")->valuestring, "node-a");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w, "metadata"), "resourceVersion",
	                          cJSON_CreateString("99"));
	lease_state_observe(&sb, w, MS(1000), NULL, 0);
	ck_assert_int_eq(sb.rec.duration_ms, 30500);
	ck_assert_int_eq(lease_judge(&b, &sb, MS(31499), NULL), LEASE_HELD);
	ck_assert_int_eq(lease_judge(&b, &sb, MS(31500), NULL), LEASE_EXPIRED);
	cJSON_Delete(w);
	cJSON_Delete(o);
	lease_state_done(&s);
	lease_state_done(&sb);
}
END_TEST

START_TEST(judge_identity_and_incarnation)
{
	struct lease_config a;
	struct lease_state s;
	cJSON *o = parse(FULL);

	lease_state_init(&s);
	lease_state_observe(&s, o, 0, NULL, 0);
	cfg_init(&a, "node-a", "abc");
	ck_assert_int_eq(lease_judge(&a, &s, MS(1), NULL), LEASE_OURS);
	/* same identity, another process: a foreign holder until it expires */
	cfg_init(&a, "node-a", "new");
	ck_assert_int_eq(lease_judge(&a, &s, MS(1), NULL), LEASE_HELD);
	ck_assert_int_eq(lease_judge(&a, &s, MS(4000), NULL), LEASE_EXPIRED);
	lease_state_observe(&s, NULL, MS(1), NULL, 0);
	ck_assert_int_eq(lease_judge(&a, &s, MS(1), NULL), LEASE_ABSENT);
	cJSON_Delete(o);
	lease_state_done(&s);
}
END_TEST

/* The duty to fence (fence-owed): the list, and how acquire and renew
 * carry it. */
START_TEST(owed_list)
{
	char l[64] = "", n[32], lv[16];
	const char *p;

	ck_assert_int_eq(lease_owed_add(l, sizeof(l), "node-a", "released"), 0);
	ck_assert_str_eq(l, "node-a:released");
	ck_assert_int_eq(lease_owed_add(l, sizeof(l), "node-b", "expired"), 0);
	/* expired is stronger than released, never the other way round */
	ck_assert_int_eq(lease_owed_add(l, sizeof(l), "node-a", "expired"), 0);
	ck_assert_int_eq(lease_owed_add(l, sizeof(l), "node-a", "released"), 0);
	ck_assert_str_eq(l, "node-b:expired,node-a:expired");
	p = l;
	ck_assert(lease_owed_next(&p, n, sizeof(n), lv, sizeof(lv)));
	ck_assert_str_eq(n, "node-b");
	ck_assert_str_eq(lv, "expired");
	ck_assert(lease_owed_next(&p, n, sizeof(n), lv, sizeof(lv)));
	ck_assert_str_eq(n, "node-a");
	ck_assert(!lease_owed_next(&p, n, sizeof(n), lv, sizeof(lv)));
	lease_owed_remove(l, "node-b");
	ck_assert_str_eq(l, "node-a:expired");
	ck_assert_int_eq(lease_owed_add(l, sizeof(l), "a,b", "expired"), -EINVAL);
	ck_assert_int_eq(lease_owed_add(l, sizeof(l), "x", "maybe"), -EINVAL);
	ck_assert_int_eq(lease_owed_add(l, 20, "node-long-name", "expired"), -ENOSPC);
	/* an entry without a level is taken at the stronger one */
	strcpy(l, "node-z");
	p = l;
	ck_assert(lease_owed_next(&p, n, sizeof(n), lv, sizeof(lv)));
	ck_assert_str_eq(lv, "expired");
}
END_TEST

static const char *owed_of(cJSON *w)
{
	cJSON *ann = cJSON_GetObjectItem(cJSON_GetObjectItem(w, "metadata"), "annotations");
	cJSON *v = cJSON_GetObjectItem(ann, LEASE_ANN_FENCE_OWED);

	return cJSON_IsString(v) ? v->valuestring : "";
}

START_TEST(acquire_writes_the_duty_to_fence)
{
	struct lease_config b;
	struct lease_state s;
	cJSON *o, *w, *w2;

	cfg_init(&b, "node-b", "bbb");
	strcpy(b.node, "node-b");
	lease_state_init(&s);
	/* node-a held it (expired): owed at level expired */
	o = parse(FULL); /* holder node-a, no node annotation */
	lease_state_observe(&s, o, 0, NULL, 0);
	w = lease_build_acquire(&b, &s, "ns", "kf", 0);
	ck_assert_str_eq(owed_of(w), "node-a:expired");
	/* our write landed but its answer was lost: the next acquire starts
	 * from our own record and keeps the duty as it stands */
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w, "metadata"), "resourceVersion",
	                          cJSON_CreateString("8"));
	lease_state_observe(&s, w, MS(10), NULL, 0);
	w2 = lease_build_acquire(&b, &s, "ns", "kf", 0);
	ck_assert_str_eq(owed_of(w2), "node-a:expired");
	cJSON_Delete(w2);
	/* renewals carry it until the term settles it */
	w2 = lease_build_renew(&s, 0);
	ck_assert_str_eq(owed_of(w2), "node-a:expired");
	cJSON_Delete(w2);
	s.settle_fence = true;
	w2 = lease_build_renew(&s, 0);
	ck_assert_str_eq(owed_of(w2), "");
	cJSON_Delete(w2);
	s.settle_fence = false;
	/* released by node-b's term, its service confirmed dead, taken by
	 * node-c: node-b is owed at level released, node-a is still owed; a
	 * node never owes itself */
	{
		cJSON *rel;
		struct lease_config c;

		s.release_dead = true;
		rel = lease_build_release(&s, "service died", 0);
		s.release_dead = false;

		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
		                          cJSON_CreateString("9"));
		lease_state_observe(&s, rel, MS(20), NULL, 0);
		cfg_init(&c, "node-c", "ccc");
		strcpy(c.node, "node-c");
		w2 = lease_build_acquire(&c, &s, "ns", "kf", 0);
		ck_assert_str_eq(owed_of(w2), "node-a:expired,node-b:released");
		cJSON_Delete(w2);
		strcpy(c.node, "node-a"); /* node-a itself takes it back: its own
		                           * entry stays (the term skips it; only a
		                           * settle with its service connected clears
		                           * it) */
		w2 = lease_build_acquire(&c, &s, "ns", "kf", 0);
		ck_assert_str_eq(owed_of(w2), "node-a:expired,node-b:released");
		cJSON_Delete(w2);
		cJSON_Delete(rel);
		/* a release without its service confirmed dead owes the full fence */
		rel = lease_build_release(&s, "promotion timed out", 0);
		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
		                          cJSON_CreateString("10"));
		lease_state_observe(&s, rel, MS(30), NULL, 0);
		strcpy(c.node, "node-c");
		w2 = lease_build_acquire(&c, &s, "ns", "kf", 0);
		ck_assert_str_eq(owed_of(w2), "node-a:expired,node-b:expired");
		cJSON_Delete(w2);
		cJSON_Delete(rel);
	}
	cJSON_Delete(w);
	cJSON_Delete(o);
	lease_state_done(&s);
}
END_TEST

/* A term held only to fence (agent.fence_without_service): its release
 * says it promoted nothing, and takes the duty it discharged off the Lease
 * with it; the successor then owes nobody.  Which records owe a fence at
 * level expired decides who may take a Lease without a service. */
START_TEST(unpromoted_release_owes_nothing)
{
	struct lease_config b, a;
	struct lease_state s;
	struct lease_record r;
	char node[64] = "";
	cJSON *o, *w, *rel;

	cfg_init(&b, "node-b", "bbb");
	strcpy(b.node, "node-b");
	cfg_init(&a, "node-a", "aaa2");
	strcpy(a.node, "node-a");
	lease_state_init(&s);
	ck_assert(!lease_acquire_owes_expired(&b, &s, node, sizeof(node))); /* nothing seen */
	o = parse(FULL);                                                    /* node-a held it */
	lease_state_observe(&s, o, 0, NULL, 0);
	ck_assert(lease_acquire_owes_expired(&b, &s, node, sizeof(node)));
	ck_assert_str_eq(node, "node-a");
	/* node-a itself (a new incarnation) owes no fence of itself */
	ck_assert(!lease_acquire_owes_expired(&a, &s, NULL, 0));

	/* node-b takes it, fences node-a, settles, releases unpromoted */
	w = lease_build_acquire(&b, &s, "ns", "kf", 0);
	ck_assert_str_eq(owed_of(w), "node-a:expired");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w, "metadata"), "resourceVersion",
	                          cJSON_CreateString("8"));
	lease_state_observe(&s, w, MS(10), NULL, 0);
	s.settle_fence = true;
	s.release_unpromoted = true;
	rel = lease_build_release(&s, "fenced without a local service", 0);
	s.settle_fence = false;
	s.release_unpromoted = false;
	ck_assert_str_eq(owed_of(rel), "");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
	                          cJSON_CreateString("9"));
	ck_assert_int_eq(lease_record_from_json(rel, &r, NULL, 0), 0);
	ck_assert(r.release_unpromoted);
	ck_assert(!r.release_dead);
	lease_state_observe(&s, rel, MS(20), NULL, 0);
	/* the replacement's node (node-b again, or node-a back) owes nobody,
	 * and nobody may take it without a service */
	ck_assert(!lease_acquire_owes_expired(&a, &s, NULL, 0));
	ck_assert(!lease_acquire_owes_expired(&b, &s, NULL, 0));
	cJSON_Delete(w);
	w = lease_build_acquire(&a, &s, "ns", "kf", 0);
	ck_assert_str_eq(owed_of(w), "");
	cJSON_Delete(w);
	cJSON_Delete(rel);

	/* a release whose fence was not settled keeps the duty on the Lease,
	 * and that still owes an expired fence */
	s.release_unpromoted = true;
	rel = lease_build_release(&s, "x", 0);
	s.release_unpromoted = false;
	cJSON_Delete(rel);
	{
		struct lease_state t;

		lease_state_init(&t);
		w = lease_build_acquire(&b, &t, "ns", "kf", 0); /* creates it */
		cJSON_AddItemToObject(cJSON_GetObjectItem(w, "metadata"), "resourceVersion",
		                      cJSON_CreateString("3"));
		cJSON_AddStringToObject(
		        cJSON_GetObjectItem(cJSON_GetObjectItem(w, "metadata"), "annotations"),
		        LEASE_ANN_FENCE_OWED, "node-c:expired");
		lease_state_observe(&t, w, 0, NULL, 0);
		t.release_unpromoted = true;
		rel = lease_build_release(&t, "fence failed, stopping", 0);
		ck_assert_str_eq(owed_of(rel), "node-c:expired");
		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
		                          cJSON_CreateString("4"));
		lease_state_observe(&t, rel, MS(5), NULL, 0);
		ck_assert(lease_acquire_owes_expired(&a, &t, node, sizeof(node)));
		ck_assert_str_eq(node, "node-c");
		cJSON_Delete(rel);
		cJSON_Delete(w);
		lease_state_done(&t);
	}

	/* released with the service confirmed dead: only the lighter fence is
	 * owed, which is the service's own node's to run, not a fencer's */
	{
		struct lease_state t;
		cJSON *held;

		lease_state_init(&t);
		lease_state_observe(&t, NULL, 0, NULL, 0);
		held = lease_build_acquire(&a, &t, "ns", "kf", 0); /* names node-a */
		cJSON_AddItemToObject(cJSON_GetObjectItem(held, "metadata"), "resourceVersion",
		                      cJSON_CreateString("10"));
		lease_state_observe(&t, held, 0, NULL, 0);
		t.release_dead = true;
		rel = lease_build_release(&t, "service died", 0);
		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
		                          cJSON_CreateString("11"));
		lease_state_observe(&t, rel, MS(5), NULL, 0);
		ck_assert(!lease_acquire_owes_expired(&b, &t, NULL, 0));
		w = lease_build_acquire(&b, &t, "ns", "kf", 0);
		ck_assert_str_eq(owed_of(w), "node-a:released");
		cJSON_Delete(w);
		cJSON_Delete(rel);
		/* ... and without it confirmed: the full one, a fencer's duty */
		t.release_dead = false;
		lease_state_observe(&t, held, MS(6), NULL, 0);
		rel = lease_build_release(&t, "promotion timed out", 0);
		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
		                          cJSON_CreateString("12"));
		lease_state_observe(&t, rel, MS(7), NULL, 0);
		ck_assert(lease_acquire_owes_expired(&b, &t, NULL, 0));
		cJSON_Delete(rel);
		cJSON_Delete(held);
		lease_state_done(&t);
	}
	cJSON_Delete(o);
	lease_state_done(&s);
}
END_TEST

/* A new incarnation on node-b, its predecessor's service perhaps still
 * frozen there, takes the Lease with no service connected only to fence
 * node-a, and releases it as unpromoted: the duty to fence node-b itself
 * must reach the successor, not vanish with the settle. */
START_TEST(fence_only_term_keeps_its_own_nodes_duty)
{
	struct lease_config old_b, new_b, a;
	struct lease_state s;
	cJSON *w, *rel;
	char node[64];

	cfg_init(&old_b, "node-b", "old");
	strcpy(old_b.node, "node-b");
	cfg_init(&new_b, "node-b", "new");
	strcpy(new_b.node, "node-b");
	cfg_init(&a, "node-a", "aaa");
	strcpy(a.node, "node-a");
	lease_state_init(&s);
	lease_state_observe(&s, NULL, 0, NULL, 0);
	w = lease_build_acquire(&old_b, &s, "ns", "kf", 0); /* node-b's old term */
	cJSON_AddItemToObject(cJSON_GetObjectItem(w, "metadata"), "resourceVersion",
	                      cJSON_CreateString("5"));
	cJSON_AddStringToObject(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(w, "metadata"), "annotations"),
	        LEASE_ANN_FENCE_OWED, "node-a:expired");
	lease_state_observe(&s, w, 0, NULL, 0);
	cJSON_Delete(w);

	/* the new incarnation: owes node-a (which it may take the Lease for)
	 * and keeps its own node's entry */
	ck_assert(lease_acquire_owes_expired(&new_b, &s, node, sizeof(node)));
	ck_assert_str_eq(node, "node-a");
	w = lease_build_acquire(&new_b, &s, "ns", "kf", 0);
	ck_assert_str_eq(owed_of(w), "node-a:expired,node-b:expired");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(w, "metadata"), "resourceVersion",
	                          cJSON_CreateString("6"));
	lease_state_observe(&s, w, MS(10), NULL, 0);
	/* node-a fenced, no service of ours connected: settle keeps node-b */
	s.settle_fence = true;
	s.settle_keep_self = true;
	s.release_unpromoted = true;
	rel = lease_build_release(&s, "fenced without a local service", 0);
	ck_assert_str_eq(owed_of(rel), "node-b:expired");
	cJSON_ReplaceItemInObject(cJSON_GetObjectItem(rel, "metadata"), "resourceVersion",
	                          cJSON_CreateString("7"));
	s.settle_fence = s.settle_keep_self = s.release_unpromoted = false;
	lease_state_observe(&s, rel, MS(20), NULL, 0);
	/* node-a, back, owes node-b the full fence */
	ck_assert(lease_acquire_owes_expired(&a, &s, node, sizeof(node)));
	ck_assert_str_eq(node, "node-b");
	cJSON_Delete(w);
	w = lease_build_acquire(&a, &s, "ns", "kf", 0);
	ck_assert_str_eq(owed_of(w), "node-b:expired");
	cJSON_Delete(w);
	/* a renewal's settle with a service connected clears the own entry */
	lease_state_observe(&s, rel, MS(30), NULL, 0);
	s.settle_fence = true;
	s.settle_keep_self = false;
	w = lease_build_renew(&s, 0);
	ck_assert_str_eq(owed_of(w), "");
	cJSON_Delete(w);
	s.settle_keep_self = true;
	w = lease_build_renew(&s, 0);
	ck_assert_str_eq(owed_of(w), "node-b:expired");
	cJSON_Delete(w);
	cJSON_Delete(rel);
	lease_state_done(&s);
}
END_TEST

START_TEST(build_acquire_increments_epoch_and_keeps_foreign_fields)
{
	struct lease_config b;
	struct lease_state s;
	struct lease_record r;
	cJSON *o = parse(FULL), *w;

	cfg_init(&b, "node-b", "bbb");
	b.duration = MS(2200);
	lease_state_init(&s);
	lease_state_observe(&s, o, 0, NULL, 0);
	w = lease_build_acquire(&b, &s, "ns", "kf", 0);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(lease_record_from_json(w, &r, NULL, 0), 0);
	ck_assert_str_eq(r.holder, "node-b");
	ck_assert_str_eq(r.incarnation, "bbb");
	ck_assert_str_eq(r.node, "node-b"); /* the node defaults to the identity */
	ck_assert_int_eq(r.transitions, 5);
	ck_assert_int_eq(r.duration_ms, 2200);
	ck_assert_str_eq(r.resource_version, "7"); /* optimistic concurrency */
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(w, "spec"), "renewTime")->valuestring,
	        "1970-01-01T00:00:00.000000Z");
	/* seconds rounded up, the exact value in the annotation */
	ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(w, "spec"), "leaseDurationSeconds")
	                         ->valueint,
	                 3);
	cJSON *meta = cJSON_GetObjectItem(w, "metadata");
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "labels"), "app")->valuestring, "x");
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "annotations"), "other")->valuestring,
	        "keep");
	cJSON_Delete(w);

	/* creating: epoch 1 */
	lease_state_observe(&s, NULL, 0, NULL, 0);
	w = lease_build_acquire(&b, &s, "ns", "kf", 0);
	ck_assert_int_eq(lease_record_from_json(w, &r, NULL, 0), -EBADMSG); /* no RV yet */
	ck_assert_int_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(w, "spec"), "leaseTransitions")->valueint,
	        1);
	ck_assert_str_eq(cJSON_GetObjectItem(w, "kind")->valuestring, "Lease");
	ck_assert_str_eq(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(w, "metadata"), "namespace")->valuestring,
	        "ns");
	cJSON_Delete(w);
	cJSON_Delete(o);
	lease_state_done(&s);
}
END_TEST

/* An in-memory API server for one Lease: writes succeed only with the
 * current resourceVersion, which every write bumps. */
struct store {
	cJSON *obj;
	int rv;
};

static int store_write(struct store *st, const cJSON *want, cJSON **ret)
{
	const cJSON *rv =
	        cJSON_GetObjectItem(cJSON_GetObjectItem(want, "metadata"), "resourceVersion");
	char buf[16];

	if (st->obj) {
		if (!rv || atoi(rv->valuestring) != st->rv)
			return -ESTALE;
	} else if (rv) {
		return -ENOENT;
	}
	cJSON_Delete(st->obj);
	st->obj = cJSON_Duplicate(want, true);
	snprintf(buf, sizeof(buf), "%d", ++st->rv);
	cJSON *meta = cJSON_GetObjectItem(st->obj, "metadata");
	cJSON_DeleteItemFromObject(meta, "resourceVersion");
	cJSON_AddStringToObject(meta, "resourceVersion", buf);
	*ret = cJSON_Duplicate(st->obj, true);
	return 0;
}

START_TEST(won_sets_validity_from_request_start)
{
	struct lease_config a;
	struct lease_state s;
	struct store st = {0};
	cJSON *w, *got = NULL;

	cfg_init(&a, "node-a", "aaa");
	lease_state_init(&s);
	lease_state_observe(&s, NULL, 0, NULL, 0);
	w = lease_build_acquire(&a, &s, "ns", "kf", 0);
	ck_assert_int_eq(store_write(&st, w, &got), 0);
	/* the request started at 100 ms and was answered at 900 ms */
	ck_assert_int_eq(lease_state_won(&s, &a, got, MS(100), MS(900), NULL, 0), 0);
	ck_assert_int_eq(s.epoch, 1);
	ck_assert_int_eq(s.valid_until, MS(3100));
	ck_assert(lease_state_is_leader(&s, MS(3099)));
	ck_assert(!lease_state_is_leader(&s, MS(3100)));
	cJSON_Delete(w);
	cJSON_Delete(got);

	/* an answer naming someone else is not a win */
	cJSON *other = parse(FULL);
	ck_assert_int_eq(lease_state_won(&s, &a, other, MS(0), MS(1), NULL, 0), -EBADMSG);
	ck_assert(!s.leading);
	cJSON_Delete(other);
	cJSON_Delete(st.obj);
	lease_state_done(&s);
}
END_TEST

START_TEST(release_frees_with_reason)
{
	struct lease_config a, b;
	struct lease_state sa, sb;
	struct store st = {0};
	cJSON *w, *got = NULL;

	cfg_init(&a, "node-a", "aaa");
	cfg_init(&b, "node-b", "bbb");
	lease_state_init(&sa);
	lease_state_init(&sb);
	lease_state_observe(&sa, NULL, 0, NULL, 0);
	w = lease_build_acquire(&a, &sa, "ns", "kf", 0);
	ck_assert_int_eq(store_write(&st, w, &got), 0);
	cJSON_Delete(w);
	ck_assert_int_eq(lease_state_won(&sa, &a, got, 0, 0, NULL, 0), 0);
	cJSON_Delete(got);

	w = lease_build_release(&sa, "service died", 0);
	ck_assert_int_eq(store_write(&st, w, &got), 0);
	cJSON_Delete(w);
	ck_assert_int_eq(lease_state_observe(&sb, got, MS(10), NULL, 0), 1);
	cJSON_Delete(got);
	ck_assert_str_eq(sb.rec.release_reason, "service died");
	ck_assert_str_eq(sb.rec.incarnation, "");
	ck_assert_str_eq(sb.rec.node, "node-a"); /* whom a successor fences */
	ck_assert_int_eq(lease_judge(&b, &sb, MS(10), NULL), LEASE_FREE);

	/* a very long reason is cut so that every reader can parse the record */
	{
		char longreason[1000];
		struct lease_record lr;
		memset(longreason, 'x', sizeof(longreason) - 1);
		longreason[sizeof(longreason) - 1] = '\0';
		cJSON *lw = lease_build_release(&sa, longreason, 0);
		cJSON_ReplaceItemInObject(cJSON_GetObjectItem(lw, "metadata"), "resourceVersion",
		                          cJSON_CreateString("99"));
		ck_assert_int_eq(lease_record_from_json(lw, &lr, NULL, 0), 0);
		ck_assert_uint_eq(strlen(lr.release_reason), sizeof(lr.release_reason) - 1);
		cJSON_Delete(lw);
	}

	/* b takes it at once; the epoch moves on and the reason is cleared */
	w = lease_build_acquire(&b, &sb, "ns", "kf", 0);
	ck_assert_int_eq(store_write(&st, w, &got), 0);
	cJSON_Delete(w);
	ck_assert_int_eq(lease_state_won(&sb, &b, got, MS(10), MS(11), NULL, 0), 0);
	cJSON_Delete(got);
	ck_assert_int_eq(sb.epoch, 2);
	ck_assert_str_eq(sb.rec.release_reason, "");
	cJSON_Delete(st.obj);
	lease_state_done(&sa);
	lease_state_done(&sb);
}
END_TEST

/* Simulated election: A leads and renews every retry period, then stops
 * (crash or partition) at a random moment; B polls every retry period with
 * random network delays.  Whatever the schedule, A's validity must end before
 * B's term starts, by at least duration - renew deadline. */
START_TEST(simulated_takeover_never_overlaps)
{
	unsigned seed = 12345u + (unsigned)_i;
	struct lease_config a, b;
	struct store st = {0};

	cfg_init(&a, "node-a", "aaa");
	cfg_init(&b, "node-b", "bbb");
	for (int round = 0; round < 20; round++) {
		struct lease_state sa, sb;
		cJSON *w, *got = NULL;
		usec_t t = 0, a_stops, b_next = MS(rand_r(&seed) % 500);
		usec_t a_next = 0;
		bool b_leads = false;

		cJSON_Delete(st.obj);
		st.obj = NULL;
		lease_state_init(&sa);
		lease_state_init(&sb);
		lease_state_observe(&sa, NULL, 0, NULL, 0);
		w = lease_build_acquire(&a, &sa, "ns", "kf", 0);
		ck_assert_int_eq(store_write(&st, w, &got), 0);
		cJSON_Delete(w);
		lease_state_won(&sa, &a, got, 0, MS(5), NULL, 0);
		cJSON_Delete(got);
		a_stops = MS(1000 + rand_r(&seed) % 5000);

		while (!b_leads && t < MS(60000)) {
			t += MS(1);
			if (t >= a_next && t < a_stops && lease_state_is_leader(&sa, t)) {
				usec_t started = t, delay = MS(rand_r(&seed) % 300);
				w = lease_build_renew(&sa, 0);
				if (store_write(&st, w, &got) == 0) {
					lease_state_won(&sa, &a, got, started, started + delay,
					                NULL, 0);
					cJSON_Delete(got);
				}
				cJSON_Delete(w);
				a_next = t + a.retry;
			}
			if (t >= b_next) {
				/* B reads the store after a random delay */
				usec_t seen = t + MS(rand_r(&seed) % 200);
				lease_state_observe(&sb, st.obj, seen, NULL, 0);
				enum lease_verdict v = lease_judge(&b, &sb, seen, NULL);
				if (v == LEASE_EXPIRED || v == LEASE_FREE) {
					w = lease_build_acquire(&b, &sb, "ns", "kf", 0);
					if (store_write(&st, w, &got) == 0) {
						lease_state_won(&sb, &b, got, seen, seen, NULL, 0);
						cJSON_Delete(got);
						b_leads = true;
						/* A's term ended with margin before B's began */
						ck_assert_msg(sa.valid_until + (b.duration -
						                                b.renew_deadline) <=
						                      seen,
						              "A valid until %lld, B leads at %lld",
						              (long long)sa.valid_until,
						              (long long)seen);
						ck_assert(!lease_state_is_leader(&sa, seen));
						ck_assert_int_eq(sb.epoch, sa.epoch + 1);
					}
					cJSON_Delete(w);
				}
				b_next = seen + b.retry;
			}
		}
		ck_assert_msg(b_leads, "B never took over");
		lease_state_done(&sa);
		lease_state_done(&sb);
	}
	cJSON_Delete(st.obj);
}
END_TEST

/* A term measured on CLOCK_MONOTONIC keeps its length on CLOCK_BOOTTIME:
 * after a suspend (BOOTTIME ran on, MONOTONIC did not) it is over. */
START_TEST(boot_deadline_counts_a_suspend)
{
	usec_t mono0 = 5000 * USEC_PER_SEC, boot0 = 9000 * USEC_PER_SEC;
	usec_t until = mono0 + 2 * USEC_PER_SEC;
	usec_t boot_until = clock_boot_until(until, mono0, boot0);

	ck_assert_int_eq(boot_until, boot0 + 2 * USEC_PER_SEC);
	/* 1 s later, no suspend: both clocks agree it is still valid */
	ck_assert(mono0 + USEC_PER_SEC < until && boot0 + USEC_PER_SEC < boot_until);
	/* 1 s later on MONOTONIC, after a 60 s suspend: BOOTTIME says over */
	ck_assert(mono0 + USEC_PER_SEC < until);
	ck_assert(!(boot0 + 61 * USEC_PER_SEC < boot_until));
	ck_assert_int_eq(clock_boot_until(USEC_INFINITY, mono0, boot0), USEC_INFINITY);
	/* the real clocks: BOOTTIME is never behind MONOTONIC (read second, so
	 * that the time between the two reads cannot make it look behind) */
	{
		usec_t m = clock_mono_usec(), b = clock_boot_usec();

		ck_assert_int_ge(b, m);
	}
}
END_TEST

static Suite *lease_suite(void)
{
	Suite *s = suite_create("lease");
	TCase *tc;

	tc = tcase_create("record");
	tcase_add_test(tc, record_full);
	tcase_add_test(tc, record_minimal);
	tcase_add_loop_test(tc, record_bad, 0, (int)(sizeof(BAD) / sizeof(BAD[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("observe");
	tcase_add_test(tc, observe_restarts_clock_only_on_change);
	tcase_add_test(tc, late_event_of_an_older_term_is_ignored);
	suite_add_tcase(s, tc);

	tc = tcase_create("judge");
	tcase_add_test(tc, judge_expiry_on_monotonic_clock);
	tcase_add_test(tc, judge_identity_and_incarnation);
	tcase_add_test(tc, parting_renewal_makes_others_wait);
	suite_add_tcase(s, tc);

	tc = tcase_create("build");
	tcase_add_test(tc, build_acquire_increments_epoch_and_keeps_foreign_fields);
	tcase_add_test(tc, release_frees_with_reason);
	tcase_add_test(tc, owed_list);
	tcase_add_test(tc, acquire_writes_the_duty_to_fence);
	tcase_add_test(tc, unpromoted_release_owes_nothing);
	tcase_add_test(tc, fence_only_term_keeps_its_own_nodes_duty);
	suite_add_tcase(s, tc);

	tc = tcase_create("validity");
	tcase_add_test(tc, won_sets_validity_from_request_start);
	tcase_add_test(tc, boot_deadline_counts_a_suspend);
	tcase_add_loop_test(tc, simulated_takeover_never_overlaps, 0, 10);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kft_main(lease_suite(), NULL);
}
