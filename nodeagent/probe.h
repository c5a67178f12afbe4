/* probe: the health probe for a service that does not speak the control
 * socket (the fallback of docs/control-protocol.md).
 *
 *   tcp://HOST:PORT         healthy when a TCP connection is accepted
 *   http://HOST:PORT/PATH   healthy when GET answers 2xx
 *
 * Such a service is a candidate while its probe passes, is "promoted" by the
 * role label alone and has no write deadline: it relies on the fence
 * methods only. */
#pragma once

#include <stddef.h>

/* Check that `url` is a probe URL this module understands.  Returns 0, or
 * -EINVAL with the reason in err. */
int probe_parse(const char *url, char *err, size_t errlen);

/* Probe once, within timeout_ms.  Returns 0 when healthy, or -errno with
 * the reason in err (-ECONNREFUSED, -ETIMEDOUT, -EIO for a non-2xx answer,
 * -EINVAL for a bad URL).  Blocks up to timeout_ms. */
int probe_check(const char *url, long timeout_ms, char *err, size_t errlen);
