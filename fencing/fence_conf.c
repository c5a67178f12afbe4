/* fence_conf: fencing's key table (see fence_conf.h).  The fence.* keys of
 * the agent's file: what they mean and how each value is checked alone;
 * the checks between keys are the agent's, which sees the whole file. */
#include "config.h"

#include "fencing/fence_conf.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "fencing/fence_scsi.h"
#include "fencing/pipeline.h"
#include "lib/k8s.h"
#include "lib/util.h"
#include "scsi/scsi_pr.h"

/* Fence methods: known names, each at most once (a list is an order). */
static int validate_methods(const union conf_value *v, char *err, size_t errlen)
{
	for (char *const *p = v->strv; *p; p++) {
		if (!fence_method_known(*p)) {
			errbuf_set(err, errlen, "unknown method '%s' (known: %s)", *p,
			           fence_method_names_joined());
			return -EINVAL;
		}
		for (char *const *q = v->strv; q < p; q++)
			if (strcmp(*q, *p) == 0) {
				errbuf_set(err, errlen, "method '%s' listed twice", *p);
				return -EINVAL;
			}
	}
	return 0;
}

static int validate_luns(const union conf_value *v, char *err, size_t errlen)
{
	size_t n = 0;

	for (char *const *p = v->strv; *p; p++, n++) {
		struct scsi_pr_url u;
		char why[256];

		if (scsi_pr_url_parse(*p, &u, why, sizeof(why)) < 0) {
			errbuf_set(err, errlen, "%s", why);
			return -EINVAL;
		}
	}
	if (n > FENCE_SCSI_LUNS_MAX) {
		errbuf_set(err, errlen, "%zu LUNs, at most %d", n, FENCE_SCSI_LUNS_MAX);
		return -EINVAL;
	}
	return 0;
}

#define F(field) offsetof(struct fence_conf, field)

/* Every key here needs a restart to change: what fences a node, and how
 * long a fence may take, is not something to change under a running
 * failover. */
const struct conf_key fence_conf_keys[] = {
        {.name = "fence.methods",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(methods),
         .validate = validate_methods,
         .help = "Fence methods, run in this order before a new master is promoted: "
                 "`scsi-pr`, `out-of-service`, `pod-delete`, `volume-detach`. "
                 "`out-of-service` taints the old node "
                 "`node.kubernetes.io/out-of-service=nodeshutdown:NoExecute`, so that a "
                 "replacement pod is not scheduled there (list it before `pod-delete`); "
                 "that node's agent lifts the taint when it is back (at its start, when it "
                 "is a follower again after a term, and every 10 s while it follows). Empty: no "
                 "fencing (failover then "
                 "relies on the Lease alone)."},
        {.name = "fence.released_methods",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(released_methods),
         .validate = validate_methods,
         .help = "Methods of fence.methods also run when the old master released the Lease "
                 "with its service confirmed dead (`scsi-pr` always runs when configured); "
                 "when the Lease expired every method runs."},
        {.name = "fence.timeout_ms",
         .type = CONF_INT,
         .def = "10000",
         .min = 100,
         .max = 600000,
         .offset = F(timeout_ms),
         .help = "Deadline of one fence method, its retries included."},
        {.name = "fence.total_timeout_ms",
         .type = CONF_INT,
         .def = "30000",
         .min = 100,
         .max = 3600000,
         .offset = F(total_timeout_ms),
         .help = "Deadline of the whole fence pipeline; at least fence.timeout_ms."},
        {.name = "fence.retries",
         .type = CONF_INT,
         .def = "3",
         .min = 0,
         .max = 100,
         .offset = F(retries),
         .help = "Extra attempts of a method after a transient failure (throttling, "
                 "unavailable server, timeout), within its deadline."},
        {.name = "fence.retry_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 10,
         .max = 60000,
         .offset = F(retry_ms),
         .help = "Pause before each retry of a method."},
        {.name = "fence.pvc",
         .type = CONF_STRING,
         .def = "",
         .offset = F(pvc),
         .validate = k8s_conf_validate_subdomain_or_empty,
         .help = "`volume-detach`: the service's PersistentVolumeClaim in service.namespace; "
                 "the VolumeAttachments of its PV on the old node are deleted. Required by "
                 "`volume-detach`."},
        {.name = "fence.out_of_service_taint",
         .type = CONF_BOOL,
         .def = "false",
         .offset = F(out_of_service_taint),
         .help = "`volume-detach`: also taint the old node "
                 "`node.kubernetes.io/out-of-service=nodeshutdown:NoExecute` (non-graceful "
                 "node shutdown) before deleting its VolumeAttachments; its agent removes it "
                 "once the node has recovered. Without a PVC, the method `out-of-service` "
                 "taints alone."},
        {.name = "fence.scsi_luns",
         .type = CONF_STRLIST,
         .def = "",
         .offset = F(scsi_luns),
         .validate = validate_luns,
         .help = "`scsi-pr`: the shared LUNs, `iscsi://HOST[:PORT]/TARGET-IQN/LUN`, at most "
                 "16. Required by `scsi-pr`."},
        {.name = "fence.scsi_iqn_prefix",
         .type = CONF_STRING,
         .def = "",
         .offset = F(scsi_iqn_prefix),
         .help = "`scsi-pr`: initiator IQN prefix (the IQN is PREFIX:NODE); empty means "
                 "`iqn.2026-11.io.kubefence`."},
        {.name = "fence.scsi_check_ms",
         .type = CONF_INT,
         .def = "2000",
         .min = 0,
         .max = 600000,
         .offset = F(scsi_check_ms),
         .help = "`scsi-pr`: how often this node checks its registration on every LUN "
                 "(READ KEYS). When a target restart lost every registration, the leader's "
                 "node, confirmed by reading the Lease right before, registers again and "
                 "takes the reservation again (Event ReservationRestored). A standby never "
                 "registers here (the target cannot tell its lost key from one a fence "
                 "removed): it registers through its own fence when it takes over. 0: no "
                 "check."},
        {.name = "fence.scsi_inflight_ms",
         .type = CONF_INT,
         .def = "500",
         .min = 0,
         .max = 60000,
         .offset = F(scsi_inflight_ms),
         .help = "`scsi-pr`: only for a target with neither PREEMPT AND ABORT nor LOGICAL "
                 "UNIT RESET: how long a command it accepted from the victim before the "
                 "PREEMPT may still take to run. The fence waits this long before it is "
                 "confirmed, so that a late write of the victim cannot land on what the new "
                 "master writes. (Where the target has either, it aborts or finishes such "
                 "commands itself before answering, and nothing is waited.) 0: no wait."},
};

#undef F

const size_t fence_conf_n_keys = ELEMENTSOF(fence_conf_keys);

static bool strv_has(char *const *v, const char *s)
{
	for (; v && *v; v++)
		if (strcmp(*v, s) == 0)
			return true;
	return false;
}

void fence_conf_check(const struct fence_conf *fc, const struct conf_source *s,
                      struct conf_errors *errs)
{
	const char *path = conf_source_path(s);
	int lm = conf_key_line(s, "fence.methods"), lr = conf_key_line(s, "fence.released_methods");
	struct conf_blame b;

	/* The pipeline's deadline must leave room for one whole method. */
	if (fc->total_timeout_ms < fc->timeout_ms &&
	    conf_blame(s, "fence.total_timeout_ms", "fence.timeout_ms", &b)) {
		if (b.first)
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64 " must not be less than fence.timeout_ms "
			                       "(%" PRId64 ", %s)",
			                       fc->total_timeout_ms, fc->timeout_ms, b.other);
		else
			(void)conf_errors_addf(errs, path, (unsigned)b.line, b.key,
			                       "%" PRId64 " must not exceed fence.total_timeout_ms "
			                       "(%" PRId64 ", %s)",
			                       fc->timeout_ms, fc->total_timeout_ms, b.other);
	}

	/* A method needs its key: reported at fence.methods (where it was
	 * asked for), or without a line when that is a default. */
	if (!conf_key_rejected(s, "fence.methods")) {
		if (strv_has(fc->methods, "volume-detach") && !conf_key_rejected(s, "fence.pvc") &&
		    !fc->pvc[0])
			(void)conf_errors_addf(errs, path, (unsigned)(lm > 0 ? lm : 0),
			                       "fence.methods", "%s needs %s (%s)", "volume-detach",
			                       "fence.pvc", "to find the volume");
		if (strv_has(fc->methods, "scsi-pr") && !conf_key_rejected(s, "fence.scsi_luns") &&
		    !(fc->scsi_luns && fc->scsi_luns[0]))
			(void)conf_errors_addf(errs, path, (unsigned)(lm > 0 ? lm : 0),
			                       "fence.methods", "%s needs %s (%s)", "scsi-pr",
			                       "fence.scsi_luns", "to know the LUNs");
	}
	if (!conf_key_rejected(s, "fence.methods") &&
	    !conf_key_rejected(s, "fence.released_methods"))
		for (char **p = fc->released_methods; p && *p; p++)
			if (!strv_has(fc->methods, *p))
				(void)conf_errors_addf(errs, path, (unsigned)(lr > 0 ? lr : 0),
				                       "fence.released_methods",
				                       "'%s' is not in fence.methods", *p);
}
