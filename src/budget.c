/* budget.c - see budget.h */
#include "budget.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

void budget_init(struct budget *b, const char *dir, const char *what, uint64_t max_size)
{
	b->dir = dir;
	b->what = what;
	b->max_size = max_size;
	b->next_check = 0;
}

uint64_t budget_margin(uint64_t fs_bytes)
{
	uint64_t m = fs_bytes / 16;

	return m < BUDGET_MARGIN_MAX ? m : BUDGET_MARGIN_MAX;
}

/* Free bytes for an unprivileged writer, and the margin; 0 or -errno. */
static int space(const struct budget *b, uint64_t *avail, uint64_t *margin)
{
	struct statvfs sv;

	*avail = *margin = 0;
	if (statvfs(b->dir, &sv) < 0)
		return -errno;
	*avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	*margin = budget_margin((uint64_t)sv.f_blocks * sv.f_frsize);
	return 0;
}

static int no_room(const struct budget *b, const char *how, uint64_t size, uint64_t avail,
		   uint64_t margin, char *err, size_t errlen)
{
	snprintf(err, errlen,
		 "No space left on device: %s %s %" PRIu64 " bytes, %" PRIu64
		 " bytes are free in %s and %" PRIu64 " must stay free",
		 b->what, how, size, avail, b->dir, margin);
	return -ENOSPC;
}

static int no_statvfs(const struct budget *b, int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: cannot see the free space of %s: %s", b->what, b->dir,
		 strerror(-rc));
	return rc;
}

int budget_expect(struct budget *b, int64_t size, uint64_t from, char *err, size_t errlen)
{
	uint64_t avail, margin, need;
	int rc;

	if (size < 0)
		return 0;
	if ((uint64_t)size > b->max_size) {
		snprintf(err, errlen,
			 "%s refused: %" PRId64 " bytes, more than max_size=%" PRIu64
			 " (-o max_size)",
			 b->what, size, b->max_size);
		return -EFBIG;
	}
	if ((rc = space(b, &avail, &margin)))
		return no_statvfs(b, rc, err, errlen);
	need = (uint64_t)size > from ? (uint64_t)size - from : 0;
	if (avail < margin || need > avail - margin)
		return no_room(b, "refused: it needs", need, avail, margin, err, errlen);
	b->next_check = from + BUDGET_CHECK_BYTES;
	return 0;
}

int budget_grow(struct budget *b, uint64_t written, char *err, size_t errlen)
{
	uint64_t avail, margin;
	int rc;

	if (written > b->max_size) {
		snprintf(err, errlen,
			 "%s stopped at max_size=%" PRIu64
			 " bytes (-o max_size): the file is longer",
			 b->what, b->max_size);
		return -EFBIG;
	}
	if (written < b->next_check)
		return 0;
	b->next_check = written + BUDGET_CHECK_BYTES;
	if ((rc = space(b, &avail, &margin)))
		return no_statvfs(b, rc, err, errlen);
	if (avail < margin)
		return no_room(b, "stopped after", written, avail, margin, err, errlen);
	return 0;
}
