/*
 * fuzz_control.c - the commands written to .control/ files
 * (control_parse_command), by any user the mount lets write there.
 *
 * Input: byte 0 picks the command file (download, extract, full-process,
 * delete), the rest is the write.
 *
 * Properties: a command accepted names at least one dataset and no other
 * bits, carries force only where force is allowed, and reads the same when
 * written back in canonical form ("title.basics,title.akas force");
 * a command refused has a one-line, terminated reason. A write stripped of
 * its final newline (its only one) parses as it did with it.
 */
#include <errno.h>

#include "catalog.h"
#include "control.h"
#include "fuzz.h"
#include "job.h"

static void check_reason(const char *err, size_t cap)
{
	FUZZ_CHECK(memchr(err, '\0', cap));
	FUZZ_CHECK(err[0] != '\0');
	FUZZ_CHECK(!strchr(err, '\n'));
}

/* c written back as dataset names, comma-separated, and "force". */
static size_t canonical(const struct command *c, char *buf, size_t cap)
{
	size_t n = 0;

	for (int i = 0; i < CATALOG_COUNT; i++)
		if (c->mask & 1u << i)
			n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? "," : "",
					      catalog_name(i));
	if (c->force)
		n += (size_t)snprintf(buf + n, cap - n, " force");
	FUZZ_CHECK(n < cap);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256], again[512];
	struct command c, c2;
	enum job_command cmd;
	int rc, rc2;

	if (size < 1)
		return 0;
	cmd = (enum job_command)(data[0] % CMD_COUNT);
	data++, size--;
	memset(err, 'x', sizeof(err));
	rc = control_parse_command(cmd, (const char *)data, size, &c, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == -EINVAL);
	FUZZ_CHECK(c.cmd == cmd && !c.scheduled);
	if (rc) {
		check_reason(err, sizeof(err));
	} else {
		FUZZ_CHECK(c.mask != 0 && (c.mask >> CATALOG_COUNT) == 0);
		FUZZ_CHECK(!c.force || cmd == CMD_DOWNLOAD || cmd == CMD_FULL_PROCESS);
		rc2 = control_parse_command(cmd, again, canonical(&c, again, sizeof(again)), &c2,
					    err, sizeof(err));
		FUZZ_CHECK(rc2 == 0 && c2.mask == c.mask && c2.force == c.force);
	}
	if (size > 0 && data[size - 1] == '\n' && !memchr(data, '\n', size - 1)) {
		rc2 =
		    control_parse_command(cmd, (const char *)data, size - 1, &c2, err, sizeof(err));
		FUZZ_CHECK(rc2 == rc);
		FUZZ_CHECK(rc || (c2.mask == c.mask && c2.force == c.force));
	}
	return 0;
}
