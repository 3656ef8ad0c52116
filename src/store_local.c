/*
 * store_local.c - the cache on local disk.
 *
 * Layout of the cache directory:
 *   NAME             committed copy (title.basics.tsv.gz, title.basics.tsv)
 *   NAME.meta        its metadata, JSON (see meta.h)
 *   .partial/NAME    the temporary being written; never served as a copy
 *   .partial/NAME.state  its checkpoint (meta.h's meta_partial): a download
 *                    resumes from there after a restart; a temporary without
 *                    one is removed at start-up
 *
 * Commit order: fsync the temporary, rename it over NAME, then write
 * NAME.meta through a temporary and rename. A crash between the renames
 * leaves a complete new copy with the old metadata: lookup() sees the size
 * disagree and drops both, so a copy is served only with its own metadata.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define PARTIAL_DIR   ".partial"
#define META_MAX_SIZE (64 * 1024)

struct store_local {
	struct store base;
	char *dir;
	int dirfd;     /* the cache directory */
	int partialfd; /* its .partial subdirectory */
};

static struct store_local *local(struct store *st)
{
	return (struct store_local *)st;
}

#define STATE_SUFFIX ".state"

static void meta_name(const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s.meta", file);
}

static void state_name(const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s" STATE_SUFFIX, file);
}

static int read_small_file(int dirfd, const char *name, char **out)
{
	char *buf = NULL;
	struct stat sb;
	ssize_t n;
	int fd, rc;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if (sb.st_size > META_MAX_SIZE) {
		rc = -EFBIG;
		goto out;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	n = pread(fd, buf, (size_t)sb.st_size, 0);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

static void drop(struct store_local *sl, const char *file, const char *why)
{
	char mname[NAME_MAX + 1];

	meta_name(file, mname, sizeof(mname));
	log_warn("cache: dropping %s/%s: %s", sl->dir, file, why);
	unlinkat(sl->dirfd, file, 0);
	unlinkat(sl->dirfd, mname, 0);
}

static int local_lookup(struct store *st, const char *file, struct meta *m)
{
	struct store_local *sl = local(st);
	char mname[NAME_MAX + 1];
	char *text = NULL;
	struct stat sb;
	int rc, have_file;

	meta_name(file, mname, sizeof(mname));
	have_file = fstatat(sl->dirfd, file, &sb, 0) == 0;
	rc = read_small_file(sl->dirfd, mname, &text);
	if (rc == -ENOENT && !have_file)
		return -ENOENT;
	if (rc) {
		drop(sl, file, "no readable metadata");
		return -ENOENT;
	}
	rc = meta_from_json(text, m);
	free(text);
	if (rc) {
		drop(sl, file, "malformed metadata");
		return -ENOENT;
	}
	if (!have_file || !S_ISREG(sb.st_mode) || sb.st_size != m->size) {
		drop(sl, file, "metadata does not match the file");
		return -ENOENT;
	}
	return 0;
}

static int local_open(struct store *st, const char *file, int *fd)
{
	*fd = openat(local(st)->dirfd, file, O_RDONLY | O_CLOEXEC);
	return *fd < 0 ? -errno : 0;
}

static int local_create_temp(struct store *st, const char *file, int *fd)
{
	/* A fresh inode: readers of an earlier temporary keep their bytes. */
	if (unlinkat(local(st)->partialfd, file, 0) < 0 && errno != ENOENT)
		return -errno;
	*fd = openat(local(st)->partialfd, file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	return *fd < 0 ? -errno : 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes text to dirfd/name through a temporary in .partial and a rename. */
/* Writes text durably to .partial/NAME.tmp. */
static int write_temp(struct store_local *sl, const char *name, const char *text)
{
	char tmp[NAME_MAX + 1];
	int fd, rc;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	fd = openat(sl->partialfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write_all(fd, text, strlen(text));
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		unlinkat(sl->partialfd, tmp, 0);
	return rc;
}

/* Moves .partial/NAME.tmp to dirfd/NAME. */
static int install_temp(struct store_local *sl, int dirfd, const char *name)
{
	char tmp[NAME_MAX + 1];

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	if (renameat(sl->partialfd, tmp, dirfd, name) < 0) {
		int rc = -errno;
		unlinkat(sl->partialfd, tmp, 0);
		return rc;
	}
	return 0;
}

/* Writes text to dirfd/name through a temporary in .partial and a rename. */
static int write_atomically(struct store_local *sl, int dirfd, const char *name, const char *text)
{
	int rc = write_temp(sl, name, text);

	return rc ? rc : install_temp(sl, dirfd, name);
}

static int local_checkpoint(struct store *st, const char *file, int fd,
			    const struct meta_partial *p)
{
	struct store_local *sl = local(st);
	char sname[NAME_MAX + 1];
	char *text;
	int rc;

	if (fdatasync(fd) < 0)
		return -errno;
	text = meta_partial_to_json(p);
	if (!text)
		return -ENOMEM;
	state_name(file, sname, sizeof(sname));
	rc = write_atomically(sl, sl->partialfd, sname, text);
	free(text);
	return rc;
}

/* Loads a temporary's saved state; 0 when it is valid for a file of size bytes. */
static int load_state(struct store_local *sl, const char *file, off_t size, struct meta_partial *p)
{
	char sname[NAME_MAX + 1];
	char *text = NULL;
	int rc;

	state_name(file, sname, sizeof(sname));
	if ((rc = read_small_file(sl->partialfd, sname, &text)))
		return rc;
	rc = meta_partial_from_json(text, p);
	free(text);
	if (!rc && p->durable > (int64_t)size)
		rc = -EINVAL;
	return rc;
}

static int local_resume(struct store *st, const char *file, int *fd, struct meta_partial *p,
			uint64_t *present)
{
	struct store_local *sl = local(st);
	struct stat sb;

	*fd = openat(sl->partialfd, file, O_RDWR | O_CLOEXEC);
	if (*fd < 0)
		return -ENOENT;
	if (fstat(*fd, &sb) < 0 || load_state(sl, file, sb.st_size, p)) {
		close(*fd);
		*fd = -1;
		return -ENOENT;
	}
	*present = (uint64_t)sb.st_size;
	return 0;
}

static void local_discard_state(struct store_local *sl, const char *file)
{
	char sname[NAME_MAX + 1];

	state_name(file, sname, sizeof(sname));
	unlinkat(sl->partialfd, sname, 0);
}

/*
 * The metadata is made durable before the copy moves, so that a crash
 * between the two renames leaves what sweep_meta_temp() rolls forward.
 */
static int local_commit(struct store *st, const char *file, int fd, const struct meta *m)
{
	struct store_local *sl = local(st);
	char mname[NAME_MAX + 1];
	char *text = meta_to_json(m);
	int rc;

	if (!text)
		return -ENOMEM;
	meta_name(file, mname, sizeof(mname));
	rc = fsync(fd) < 0 ? -errno : write_temp(sl, mname, text);
	free(text);
	if (rc)
		return rc;
	if (renameat(sl->partialfd, file, sl->dirfd, file) < 0) {
		char tmp[NAME_MAX + 16];
		rc = -errno;
		snprintf(tmp, sizeof(tmp), "%s.tmp", mname);
		unlinkat(sl->partialfd, tmp, 0);
		return rc;
	}
	local_discard_state(sl, file);
	rc = install_temp(sl, sl->dirfd, mname);
	if (rc) {
		drop(sl, file, "cannot write its metadata");
		return rc;
	}
	if (fsync(sl->dirfd) < 0)
		return -errno;
	return 0;
}

static void local_discard_temp(struct store *st, const char *file)
{
	unlinkat(local(st)->partialfd, file, 0);
	local_discard_state(local(st), file);
}

static int local_evict(struct store *st, const char *file)
{
	struct store_local *sl = local(st);
	char mname[NAME_MAX + 1];
	int had_file, had_meta;

	meta_name(file, mname, sizeof(mname));
	/* The metadata goes first: a crash in between leaves an orphan, never a lie. */
	had_meta = unlinkat(sl->dirfd, mname, 0) == 0;
	had_file = unlinkat(sl->dirfd, file, 0) == 0;
	return had_file || had_meta ? 0 : -ENOENT;
}

static const char *local_location(const struct store *st)
{
	return ((const struct store_local *)st)->dir;
}

static void local_destroy(struct store *st)
{
	struct store_local *sl = local(st);

	if (sl->partialfd >= 0)
		close(sl->partialfd);
	if (sl->dirfd >= 0)
		close(sl->dirfd);
	free(sl->dir);
	free(sl);
}

static const struct store_ops local_ops = {
    .lookup = local_lookup,
    .open = local_open,
    .create_temp = local_create_temp,
    .checkpoint = local_checkpoint,
    .resume = local_resume,
    .commit = local_commit,
    .discard_temp = local_discard_temp,
    .evict = local_evict,
    .location = local_location,
    .destroy = local_destroy,
};

static bool has_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), k = strlen(suffix);

	return n > k && strcmp(name + n - k, suffix) == 0;
}

#define META_TEMP_SUFFIX ".meta.tmp"

/*
 * NAME.meta.tmp left by a crash inside local_commit(): when the copy it
 * describes already moved into place (no .partial/NAME any more, and the
 * sizes agree), install it; otherwise it belongs to nothing.
 */
static void sweep_meta_temp(struct store_local *sl, const char *name)
{
	char file[NAME_MAX + 1], mname[NAME_MAX + 16];
	char *text = NULL;
	struct stat sb;
	struct meta m;

	snprintf(file, sizeof(file), "%.*s", (int)(strlen(name) - strlen(META_TEMP_SUFFIX)), name);
	meta_name(file, mname, sizeof(mname));
	if (fstatat(sl->partialfd, file, &sb, 0) != 0 &&
	    read_small_file(sl->partialfd, name, &text) == 0 && meta_from_json(text, &m) == 0 &&
	    fstatat(sl->dirfd, file, &sb, 0) == 0 && sb.st_size == m.size &&
	    renameat(sl->partialfd, name, sl->dirfd, mname) == 0) {
		log_info("cache: completed the commit of %s/%s interrupted by a crash", sl->dir,
			 file);
		free(text);
		return;
	}
	free(text);
	unlinkat(sl->partialfd, name, 0);
}

/* An earlier run's temporary: kept when its saved state lets it resume. */
static void sweep_entry(struct store_local *sl, const char *name)
{
	struct meta_partial p;
	struct stat sb;

	if (has_suffix(name, META_TEMP_SUFFIX)) {
		sweep_meta_temp(sl, name);
		return;
	}

	if (has_suffix(name, STATE_SUFFIX)) {
		char data[NAME_MAX + 1];
		snprintf(data, sizeof(data), "%.*s", (int)(strlen(name) - strlen(STATE_SUFFIX)),
			 name);
		if (fstatat(sl->partialfd, data, &sb, 0) == 0)
			return; /* judged with its data file */
	} else if (fstatat(sl->partialfd, name, &sb, 0) == 0 && S_ISREG(sb.st_mode) &&
		   load_state(sl, name, sb.st_size, &p) == 0) {
		log_info("cache: keeping partial download %s/%s/%s (%lld bytes) to resume", sl->dir,
			 PARTIAL_DIR, name, (long long)p.durable);
		return;
	}
	log_info("cache: removing leftover temporary %s/%s/%s", sl->dir, PARTIAL_DIR, name);
	unlinkat(sl->partialfd, name, 0);
	if (!has_suffix(name, STATE_SUFFIX))
		local_discard_state(sl, name);
}

static void sweep_partial(struct store_local *sl)
{
	int fd = dup(sl->partialfd);
	struct dirent *de;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.')
			sweep_entry(sl, de->d_name);
	}
	closedir(d);
}

static int make_dirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int store_local_open(const char *dir, struct store **out, char *err, size_t errlen)
{
	struct store_local *sl;
	int rc;

	if ((rc = make_dirs(dir))) {
		snprintf(err, errlen, "cache_dir %s: %s", dir, strerror(-rc));
		return rc;
	}
	sl = calloc(1, sizeof(*sl));
	if (!sl || !(sl->dir = strdup(dir))) {
		free(sl);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	sl->base.ops = &local_ops;
	sl->partialfd = -1;
	sl->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sl->dirfd < 0 || faccessat(sl->dirfd, ".", W_OK | X_OK, AT_EACCESS) < 0 ||
	    (mkdirat(sl->dirfd, PARTIAL_DIR, 0700) < 0 && errno != EEXIST) ||
	    (sl->partialfd = openat(sl->dirfd, PARTIAL_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) <
		0) {
		rc = -errno;
		snprintf(err, errlen, "cache_dir %s: %s", dir, strerror(errno));
		local_destroy(&sl->base);
		return rc;
	}
	sweep_partial(sl);
	*out = &sl->base;
	return 0;
}
