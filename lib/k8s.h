/* k8s: a small, thread-safe Kubernetes REST client.
 *
 * Speaks JSON over HTTPS (libcurl, TLS always verified) to one API server
 * described by a kubeconfig file or the in-cluster service account.  Every
 * call takes a deadline in milliseconds and returns >= 0 or a negative errno
 * (table below), with the API's own message kept in the caller's error buffer
 * as `VERB resource "name" in "ns": CODE Phrase: message`.  Nothing in here
 * logs a failure it returns; only the watch loop, which decides to retry,
 * logs what it does.
 *
 * One `struct k8s_client` may be used from several threads at once: each
 * request borrows its own curl handle from a small pool, and a bearer token
 * read from a file is re-read (at most once a second) when the file changes,
 * since bound service-account tokens rotate.
 *
 * HTTP status to errno (k8s_status_to_errno()):
 *
 *   | status                      | errno        | meaning                        |
 *   |-----------------------------|--------------|--------------------------------|
 *   | 2xx                         | 0            | success                        |
 *   | 400                         | -EBADMSG     | malformed request              |
 *   | 401                         | -EACCES      | not authenticated              |
 *   | 403                         | -EPERM       | forbidden by RBAC/admission    |
 *   | 404                         | -ENOENT      | no such object                 |
 *   | 405                         | -EOPNOTSUPP  | verb not allowed               |
 *   | 408                         | -ETIMEDOUT   | request timeout                |
 *   | 409, reason AlreadyExists   | -EEXIST      | create of an existing name     |
 *   | 409, any other reason       | -ESTALE      | stale resourceVersion / failed |
 *   |                             |              | precondition (uid, RV)         |
 *   | 410                         | -EIDRM       | resourceVersion too old        |
 *   | 413                         | -EFBIG       | request too large              |
 *   | 415                         | -EOPNOTSUPP  | content type not supported     |
 *   | 422                         | -EINVAL      | invalid object                 |
 *   | 429                         | -EAGAIN      | throttled                      |
 *   | 500                         | -EIO         | internal error                 |
 *   | 503                         | -EAGAIN      | unavailable                    |
 *   | 504                         | -ETIMEDOUT   | server-side timeout            |
 *   | other 5xx                   | -EIO         |                                |
 *   | other 1xx, 3xx, 4xx         | -EPROTO      |                                |
 *
 * Transport errors: deadline passed -ETIMEDOUT; connection refused
 * -ECONNREFUSED (-EHOSTUNREACH/-ENETUNREACH when the kernel said so);
 * connection reset -ECONNRESET; server certificate not verified (or CA
 * unreadable) -EKEYREJECTED; any other curl error -EIO, naming the curl error
 * in the buffer.  A response body that is not the JSON expected (malformed,
 * truncated, wrong shape) is -EBADMSG; a body over 16 MiB is -EFBIG.  A watch
 * stopped with k8s_watch_stop() returns -ECANCELED from k8s_watch_once(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "lib/conf.h"

struct k8s_client;

/* The value of k8s_client_new()'s first argument that selects the in-cluster
 * service account instead of a kubeconfig file. */
#define K8S_IN_CLUSTER "in-cluster"

/* Largest resourceVersion kept by the watch functions (with the NUL). */
#define K8S_RV_MAX 128

/* Create a client from the kubeconfig at `path` and `context` (NULL = the
 * file's current-context).  Returns 0 and the client in *ret (free with
 * k8s_client_free()), or -errno with the reason in err (see
 * kubeconfig_load()).  Reads files; does not touch the network. */
int k8s_client_new_from_kubeconfig(const char *path, const char *context, struct k8s_client **ret,
                                   char *err, size_t errlen);

/* Create a client from the pod's service account in `sa_dir` (NULL = the
 * standard directory) and KUBERNETES_SERVICE_HOST/PORT.  As above. */
int k8s_client_new_in_cluster(const char *sa_dir, struct k8s_client **ret, char *err,
                              size_t errlen);

/* K8S_IN_CLUSTER ("in-cluster") picks k8s_client_new_in_cluster(NULL, ...);
 * anything else is a kubeconfig path.  NULL or "" is -EINVAL. */
int k8s_client_new(const char *kubeconfig_or_in_cluster, const char *context,
                   struct k8s_client **ret, char *err, size_t errlen);

/* Free a client; accepts NULL; returns NULL.  No request may be running. */
struct k8s_client *k8s_client_free(struct k8s_client *c);

/* The server URL, e.g. "https://10.96.0.1:443"; owned by the client. */
const char *k8s_client_server(const struct k8s_client *c);

/* The configured namespace (context or service account), or NULL. */
const char *k8s_client_namespace(const struct k8s_client *c);

/* Map an HTTP status and the Status object's `reason` (may be NULL) to 0 or
 * -errno per the table above.  Pure. */
int k8s_status_to_errno(long http_status, const char *reason);

/* Whether retrying the same request later may succeed: -EAGAIN, -ETIMEDOUT,
 * -EIO, -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -ENETUNREACH.  The sign of
 * r is ignored.  Pure. */
bool k8s_error_is_retryable(int r);

/* Build a REST path into buf: "/api/v1/..." for the core group_version "v1",
 * "/apis/GROUP/VERSION/..." otherwise; "namespaces/NS/" when ns is not NULL;
 * then resource, then "/name" when name is not NULL.  Returns the length, or
 * -EINVAL for an empty or unsafe segment (containing '/', '?', '#', '%',
 * whitespace, or being "." / ".."), or -ENAMETOOLONG.  Pure. */
int k8s_path(char *buf, size_t len, const char *group_version, const char *ns, const char *resource,
             const char *name);

/* The object calls.  `path` is an object path, `collection_path` a collection
 * path from k8s_path().  Each blocks for at most `timeout_ms` (> 0, else
 * -EINVAL) and returns 0 or -errno (table above) with detail in err.  When
 * `ret` is not NULL it receives the server's response object, owned by the
 * caller (cJSON_Delete()); it is set only on success.  None retries. */
int k8s_get(struct k8s_client *c, const char *path, long timeout_ms, cJSON **ret, char *err,
            size_t errlen);

/* POST obj to collection_path.  An existing name is -EEXIST. */
int k8s_create(struct k8s_client *c, const char *collection_path, const cJSON *obj, long timeout_ms,
               cJSON **ret, char *err, size_t errlen);

/* PUT obj to path.  With metadata.resourceVersion set the update is
 * conditional and a stale version is -ESTALE; without, it is unconditional. */
int k8s_update(struct k8s_client *c, const char *path, const cJSON *obj, long timeout_ms,
               cJSON **ret, char *err, size_t errlen);

/* PATCH path with a JSON merge patch (RFC 7386). */
int k8s_merge_patch(struct k8s_client *c, const char *path, const cJSON *patch, long timeout_ms,
                    cJSON **ret, char *err, size_t errlen);

/* DELETE path.  grace_seconds: -1 = the server's default, 0 = immediately,
 * > 0 = that grace period.  uid and resource_version (NULL = none) become
 * DeleteOptions preconditions; a mismatch is -ESTALE (409 Conflict,
 * "Precondition failed").  A missing object is -ENOENT. */
int k8s_delete(struct k8s_client *c, const char *path, int grace_seconds, const char *uid,
               const char *resource_version, long timeout_ms, char *err, size_t errlen);

/* GET collection_path with optional label and field selectors (NULL = none;
 * URL-escaped here).  *ret receives the List object; its "items" is always
 * an array (an absent or null one is replaced by []), and
 * metadata.resourceVersion is the version to watch from. */
int k8s_list(struct k8s_client *c, const char *collection_path, const char *label_selector,
             const char *field_selector, long timeout_ms, cJSON **ret, char *err, size_t errlen);

/* ------------------------------------------------------------------ watch */

enum k8s_event {
	/* After each (re)list in k8s_watch_loop(): `object` is the List, whose
	 * "items" array is the complete current state; forget anything
	 * learned before. */
	K8S_EVENT_SYNC,
	K8S_EVENT_ADDED,
	K8S_EVENT_MODIFIED,
	K8S_EVENT_DELETED,
};

/* Receives each event on the watching thread.  `object` is borrowed: valid
 * only during the call (cJSON_Duplicate() to keep it).  Return 0 to go on,
 * or a negative errno to end the watch with that value.  BOOKMARK events are
 * not delivered: they only advance the resourceVersion watched from.  A
 * callback may call k8s_watch_stop() to end the watch cleanly. */
typedef int (*k8s_watch_fn)(enum k8s_event type, const cJSON *object, void *userdata);

struct k8s_watch_opts {
	const char *label_selector; /* NULL = all */
	const char *field_selector; /* NULL = all */
	/* Server-side length of one watch request (timeoutSeconds); the loop
	 * then resumes from the last resourceVersion.  0 = 60. */
	int timeout_seconds;
	/* Deadline of each list, and slack added to timeout_seconds for the
	 * deadline of each watch request.  0 = 10000. */
	long request_timeout_ms;
};

/* A watch's stop handle: lets another thread end a blocked watch within
 * milliseconds.  One thread at a time may watch with it; once stopped it
 * stays stopped. */
struct k8s_watch;

/* Returns 0 and a new handle in *ret, or -ENOMEM. */
int k8s_watch_new(struct k8s_watch **ret);

/* Free a handle; accepts NULL; returns NULL.  No watch may be using it. */
struct k8s_watch *k8s_watch_free(struct k8s_watch *w);

/* Ask the watch using w to end; safe from any thread (and from a callback);
 * does not block. */
void k8s_watch_stop(struct k8s_watch *w);

/* Whether k8s_watch_stop() was called. */
bool k8s_watch_is_stopped(const struct k8s_watch *w);

/* One watch request on collection_path from resource version `rv` (an empty
 * string = from "now", with synthetic ADDED events for existing objects).
 * Delivers events to cb until the server ends the stream (returns 0), the
 * deadline `timeout_ms` passes (-ETIMEDOUT), w is stopped (-ECANCELED), an
 * ERROR event arrives (its Status code mapped; 410 Expired -> -EIDRM), the
 * stream is malformed or an event exceeds 4 MiB (-EBADMSG), the callback
 * fails (its value), or the request fails (table above).  `rv` (K8S_RV_MAX
 * bytes) is updated in place to the last resourceVersion seen, on error
 * too, so the caller can resume.  w may be NULL (not stoppable).  Blocks. */
int k8s_watch_once(struct k8s_client *c, struct k8s_watch *w, const char *collection_path,
                   const struct k8s_watch_opts *opts, char rv[static K8S_RV_MAX], long timeout_ms,
                   k8s_watch_fn cb, void *userdata, char *err, size_t errlen);

/* List, deliver K8S_EVENT_SYNC with the List, then watch from its
 * resourceVersion; on a clean end or a retryable error resume from the last
 * resourceVersion seen (retryable errors after a back-off of 200 ms doubling
 * to 5 s, logged as warnings); relist at once on -EIDRM, and after a back-off
 * on a malformed stream.  Returns 0 when w is stopped (within ~100 ms, at any
 * point), the callback's negative value when it fails, or an error that
 * retrying cannot fix (e.g. -EPERM, -EACCES, -EKEYREJECTED, -ENOENT) with
 * detail in err.  Blocks until then; runs on the calling thread. */
int k8s_watch_loop(struct k8s_client *c, struct k8s_watch *w, const char *collection_path,
                   const struct k8s_watch_opts *opts, k8s_watch_fn cb, void *userdata, char *err,
                   size_t errlen);

/* --------------------------------------------------------------------------
 * Internal: exported for the unit tests only; other modules must not use
 * these. */

/* What a transport is asked to send. */
struct k8s_http_request {
	const char *method;
	const char *url;
	const char *authorization; /* "Bearer ...", or NULL */
	const char *content_type;  /* NULL when there is no body */
	const char *body;
	size_t body_len;
	long timeout_ms;
};

/* Receives the response body in chunks, with the status already known;
 * returns 0, or -errno to abort the transfer. */
typedef int (*k8s_sink_fn)(void *ctx, long http_status, const char *data, size_t len);

/* Performs one request: feeds the body to sink, stores the status, returns
 * 0, the sink's error, or a transport -errno with detail in err. */
typedef int (*k8s_transport_fn)(const struct k8s_http_request *req, k8s_sink_fn sink,
                                void *sink_ctx, long *ret_status, char *err, size_t errlen,
                                void *userdata);

/* Replace libcurl by fn (NULL restores libcurl).  Not thread-safe. */
void k8s_client_set_transport(struct k8s_client *c, k8s_transport_fn fn, void *userdata);

/* Called after every request of c that failed (an error status, no answer,
 * a bad answer), with its -errno, on the calling thread; must not block.
 * Watch streams are not requests here: their end is routine.  Set before
 * the client is shared; NULL: none. */
typedef void (*k8s_error_fn)(void *userdata, int r);
void k8s_client_set_error_hook(struct k8s_client *c, k8s_error_fn fn, void *userdata);

/* The error of a non-2xx response: parses the Status object in body (any
 * shape, even not JSON), writes `VERB resource "name" in "ns": CODE Phrase:
 * message` to err and returns k8s_status_to_errno().  Pure. */
int k8s_response_error(const char *verb, const char *path, long http_status, const char *body,
                       size_t len, char *err, size_t errlen);

/* The incremental parser of a watch stream (newline-delimited JSON). */
struct k8s_watch_parser;

#define K8S_WATCH_EVENT_MAX (4u * 1024 * 1024)

/* max_event = 0 means K8S_WATCH_EVENT_MAX.  Returns 0 or -ENOMEM. */
int k8s_watch_parser_new(size_t max_event, k8s_watch_fn cb, void *userdata,
                         struct k8s_watch_parser **ret);
struct k8s_watch_parser *k8s_watch_parser_free(struct k8s_watch_parser *p);

/* Feed bytes as they arrive; events are delivered as their line completes.
 * Returns 0 or the error that ended the stream (sticky; see
 * k8s_watch_once()). */
int k8s_watch_parser_feed(struct k8s_watch_parser *p, const char *data, size_t len, char *err,
                          size_t errlen);

/* The stream ended: a final unterminated event is parsed; a truncated one
 * is -EBADMSG. */
int k8s_watch_parser_finish(struct k8s_watch_parser *p, char *err, size_t errlen);

/* The last resourceVersion seen ("" if none); owned by the parser. */
const char *k8s_watch_parser_rv(const struct k8s_watch_parser *p);

/* Whether the error returned came from the callback. */
bool k8s_watch_parser_callback_failed(const struct k8s_watch_parser *p);

/* Kubernetes' IsDNS1123Subdomain / IsDNS1123Label as conf validators (see
 * conf_validate_fn), so that a typo in a name is reported at its line
 * instead of as an HTTP 422 at run time.  The _or_empty form accepts "". */
int k8s_conf_validate_subdomain(const union conf_value *v, char *err, size_t errlen);
int k8s_conf_validate_subdomain_or_empty(const union conf_value *v, char *err, size_t errlen);
int k8s_conf_validate_label(const union conf_value *v, char *err, size_t errlen);
