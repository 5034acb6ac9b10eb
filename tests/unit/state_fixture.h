/* state_fixture.h - a unit suite's own host state: a fresh directory under /tmp holding the state
 * directory ($LLMCAP_STATE_DIR points at it) and a new signing key pair, loaded for signing and
 * verifying policies. Header-only: each suite is one .c file. */
#ifndef LC_STATE_FIXTURE_H
#define LC_STATE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "sign.h"

/* dir receives "/tmp/llmcap-unit-NAME.XXXXXX" (made); 0 ok, -1 with nothing usable */
static inline int lc_fixture_setup(const char *name, char *dir, size_t dirlen, struct lc_signkey *skey,
				   struct lc_trust *trust)
{
	char err[256], sd[300], kd[300], f[400];

	snprintf(dir, dirlen, "/tmp/llmcap-unit-%s.XXXXXX", name);
	if (!mkdtemp(dir))
		return -1;
	snprintf(sd, sizeof(sd), "%s/state", dir);
	snprintf(kd, sizeof(kd), "%s/keys", dir);
	setenv("LLMCAP_STATE_DIR", sd, 1);
	if (lc_keygen(kd, err, sizeof(err)))
		return -1;
	snprintf(f, sizeof(f), "%s/llmcap.key", kd);
	if (lc_signkey_load(f, skey, err, sizeof(err)))
		return -1;
	snprintf(f, sizeof(f), "%s/llmcap.pub", kd);
	return lc_trust_load(f, trust, err, sizeof(err));
}

static inline int lc_fixture_teardown(const char *dir)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#endif
