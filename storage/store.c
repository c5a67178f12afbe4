/* store: parse a store URL and open the metastore it names (store.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "storage/backend_lun.h"
#include "storage/store.h"

int store_spec_parse(const char *text, const char *node, const char *iqn_prefix,
                     struct store_spec *ret, char *err, size_t errlen)
{
	struct store_spec s = {0};
	struct scsi_pr_url u;
	int r;

	if (!text || !*text) {
		errbuf_set(err, errlen, "empty store URL (dir:PATH or iscsi://HOST/IQN/LUN)");
		return -EINVAL;
	}
	if (strncmp(text, "dir:", 4) == 0 || text[0] == '/') {
		const char *p = text[0] == '/' ? text : text + 4;

		if (p[0] != '/') {
			errbuf_set(err, errlen, "'%s': the directory must be an absolute path",
			           text);
			return -EINVAL;
		}
		s.kind = STORE_DIR;
		if (str_copy(s.path, sizeof(s.path), p) < 0) {
			errbuf_set(err, errlen, "'%s': path too long", text);
			return -EINVAL;
		}
		*ret = s;
		return 0;
	}
	if (strncmp(text, "iscsi://", 8) != 0) {
		errbuf_set(err, errlen,
		           "'%s' is not a store URL: use dir:PATH or iscsi://HOST[:PORT]/IQN/LUN",
		           text);
		return -EINVAL;
	}
	r = scsi_pr_url_parse(text, &u, err, errlen);
	if (r < 0)
		return r;
	if (!node || !*node) {
		errbuf_set(err, errlen,
		           "'%s': a LUN store needs this node's name (--node or $NODE_NAME): it "
		           "gives the initiator IQN and the reservation key the agent's scsi-pr "
		           "fence uses",
		           text);
		return -EINVAL;
	}
	s.kind = STORE_LUN;
	(void)str_copy(s.url, sizeof(s.url), text);
	if (str_copy(s.node, sizeof(s.node), node) < 0) {
		errbuf_set(err, errlen, "node name '%s' too long", node);
		return -EINVAL;
	}
	r = scsi_pr_iqn_for_node(iqn_prefix && *iqn_prefix ? iqn_prefix : NULL, node, s.initiator,
	                         sizeof(s.initiator));
	if (r < 0) {
		errbuf_set(err, errlen,
		           "node name '%s' cannot be part of an iSCSI name (lowercase letters, "
		           "digits, '.', '-'): %s",
		           node, strerror(-r));
		return -EINVAL;
	}
	*ret = s;
	return 0;
}

const char *store_spec_describe(const struct store_spec *s, char *buf, size_t len)
{
	if (s->kind == STORE_LUN)
		snprintf(buf, len, "LUN '%s' as '%s'", s->url, s->initiator);
	else
		snprintf(buf, len, "directory '%s'", s->path);
	return buf;
}

bool store_spec_target_fenced(const struct store_spec *s)
{
	return s->kind == STORE_LUN;
}

int store_open(const struct store_spec *s, const struct metastore_options *opts,
               struct metastore **ret, char *err, size_t errlen)
{
	int r;

	if (s->kind == STORE_DIR)
		return metastore_open_dir(s->path, opts, ret, err, errlen);
	r = metastore_open_lun_join(s->url, s->initiator, s->node, s->join_empty, opts, ret, err,
	                            errlen);
	if (r != -EMEDIUMTYPE || !s->format_unused || (opts && opts->read_only))
		return r;
	/* No superblock.  Only a LUN that was never written is initialised:
	 * one that held a store whose superblock was lost must be looked at by
	 * an operator, not formatted over. */
	r = backend_lun_format_unused(s->url, s->initiator, s->node, s->join_empty, err, errlen);
	if (r < 0)
		return r;
	return metastore_open_lun_join(s->url, s->initiator, s->node, s->join_empty, opts, ret, err,
	                               errlen);
}
