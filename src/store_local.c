/*
 * store_local.c - the cache on local disk.
 *
 * Layout of the cache directory:
 *   NAME             committed copy (title.basics.tsv.gz, title.basics.tsv)
 *   NAME.meta        its metadata, JSON (see meta.h)
 *   .lock            flock()ed for the daemon's life: one daemon per directory
 *   .partial/NAME    the temporary being written; never served as a copy
 *   .partial/NAME.state  its checkpoint (meta.h's meta_partial): a download
 *                    resumes from there after a restart; a temporary without
 *                    one is removed at start-up
 *   .partial/NAME.meta.tmp, NAME.old, NAME.meta.old   only during a commit
 *
 * Trust: the directory and .partial must be the daemon's own (its uid, not
 * writable by group or others, not symbolic links), or the store refuses to
 * open, as ssh's StrictModes does. Every open is relative to their
 * descriptors with O_NOFOLLOW (O_NONBLOCK too: a FIFO never blocks us), and
 * an entry is used only when it is a regular file owned by our uid; new files
 * are created with O_EXCL.
 *
 * Commit (local_commit), each step durable before the next:
 *   1. fsync the temporary; write .partial/NAME.meta.tmp and fsync it
 *   2. hard-link the old pair aside (.partial/NAME.old, NAME.meta.old), fsync .partial
 *   3. unlink NAME.meta, fsync the directory      (the old pair is no longer served)
 *   4. rename .partial/NAME to NAME, fsync the directory
 *   5. rename .partial/NAME.meta.tmp to NAME.meta, fsync the directory (the new pair is served)
 *   6. unlink the asides and the checkpoint, fsync .partial
 * A failure in 3-5 puts the old pair back from its asides. A crash anywhere
 * leaves what recover() turns back into a whole pair at the next start: with
 * NAME.meta present, nothing to do; NAME.meta.tmp present and .partial/NAME
 * gone, step 4 happened: install the new metadata; otherwise put the old pair
 * back. NAME is never served with the metadata of another copy.
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

#include "cachedir.h"
#include "log.h"

#define PARTIAL_DIR   ".partial"
#define LOCK_FILE     ".lock"
#define META_MAX_SIZE (64 * 1024)

struct store_local {
	struct store base;
	char *dir;
	int dirfd;     /* the cache directory */
	int partialfd; /* its .partial subdirectory */
	int lockfd;    /* .lock, flock()ed while the store is open */
};

static struct store_local *local(struct store *st)
{
	return (struct store_local *)st;
}

#define STATE_SUFFIX	 ".state"
#define META_TEMP_SUFFIX ".meta.tmp"
#define META_OLD_SUFFIX	 ".meta.old"
#define OLD_SUFFIX	 ".old"

/* The names of one file's pieces; NAME_MAX + 16 leaves room for every suffix. */
struct names {
	char meta[NAME_MAX + 16];     /* NAME.meta, in the cache directory */
	char meta_tmp[NAME_MAX + 16]; /* the rest in .partial */
	char meta_old[NAME_MAX + 16];
	char old[NAME_MAX + 16];
	char state[NAME_MAX + 16];
};

static void names_of(const char *file, struct names *n)
{
	snprintf(n->meta, sizeof(n->meta), "%s.meta", file);
	snprintf(n->meta_tmp, sizeof(n->meta_tmp), "%s" META_TEMP_SUFFIX, file);
	snprintf(n->meta_old, sizeof(n->meta_old), "%s" META_OLD_SUFFIX, file);
	snprintf(n->old, sizeof(n->old), "%s" OLD_SUFFIX, file);
	snprintf(n->state, sizeof(n->state), "%s" STATE_SUFFIX, file);
}

/* 0 when the entry is a regular file of ours (sb filled); -ENOENT, -ELOOP or -EPERM otherwise. */
static int check_entry(const struct stat *sb)
{
	if (S_ISLNK(sb->st_mode))
		return -ELOOP;
	return S_ISREG(sb->st_mode) && sb->st_uid == geteuid() ? 0 : -EPERM;
}

static int stat_entry(int dirfd, const char *name, struct stat *sb)
{
	if (fstatat(dirfd, name, sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return check_entry(sb);
}

static bool exists(int dirfd, const char *name)
{
	struct stat sb;

	return fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * Opens an existing entry that must be a regular file of ours, never through
 * a link; O_NONBLOCK so that a FIFO does not block the open, dropped once the
 * entry is known to be a regular file.
 */
static int open_entry(int dirfd, const char *name, int flags, int *fdp, struct stat *sb)
{
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	int rc;

	*fdp = -1;
	if (fd < 0)
		return -errno;
	rc = fstat(fd, sb) < 0 ? -errno : check_entry(sb);
	if (!rc && fcntl(fd, F_SETFL, flags & ~O_ACCMODE) < 0)
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	*fdp = fd;
	return 0;
}

static int sync_dir(int dirfd)
{
	return fsync(dirfd) < 0 ? -errno : 0;
}

static int unlink_if_there(int dirfd, const char *name)
{
	return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
}

static int read_small_file(int dirfd, const char *name, char **out)
{
	char *buf = NULL;
	struct stat sb;
	ssize_t n;
	int fd, rc;

	if ((rc = open_entry(dirfd, name, O_RDONLY, &fd, &sb)))
		return rc;
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
	struct names n;

	names_of(file, &n);
	log_warn("cache: dropping %s/%s: %s", sl->dir, file, why);
	unlinkat(sl->dirfd, file, 0);
	unlinkat(sl->dirfd, n.meta, 0);
}

static int local_lookup(struct store *st, const char *file, struct meta *m)
{
	struct store_local *sl = local(st);
	char *text = NULL;
	struct names n;
	struct stat sb;
	int rc, have_file;

	names_of(file, &n);
	have_file = stat_entry(sl->dirfd, file, &sb) == 0;
	rc = read_small_file(sl->dirfd, n.meta, &text);
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
	if (!have_file || sb.st_size != m->size) {
		drop(sl, file, "metadata does not match the file");
		return -ENOENT;
	}
	return 0;
}

static int local_open(struct store *st, const char *file, int *fd)
{
	struct stat sb;

	return open_entry(local(st)->dirfd, file, O_RDONLY, fd, &sb);
}

/* A new file in dirfd, replacing any entry of that name (a link is removed, not followed). */
static int create_file(int dirfd, const char *name, int flags, int *fd)
{
	int rc = unlink_if_there(dirfd, name);

	*fd = -1;
	if (rc)
		return rc;
	*fd = openat(dirfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	return *fd < 0 ? -errno : 0;
}

static int local_create_temp(struct store *st, const char *file, int *fd)
{
	/* A fresh inode: readers of an earlier temporary keep their bytes. */
	return create_file(local(st)->partialfd, file, O_RDWR, fd);
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

/* Writes text to .partial/tmp, its bytes fsynced (its name is not yet durable). */
static int write_temp(struct store_local *sl, const char *tmp, const char *text)
{
	int fd, rc;

	if ((rc = create_file(sl->partialfd, tmp, O_WRONLY, &fd)))
		return rc;
	rc = write_all(fd, text, strlen(text));
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (rc)
		unlinkat(sl->partialfd, tmp, 0);
	return rc;
}

static int local_checkpoint(struct store *st, const char *file, int fd,
			    const struct meta_partial *p)
{
	struct store_local *sl = local(st);
	char tmp[NAME_MAX + 32];
	struct names n;
	char *text;
	int rc;

	if (fdatasync(fd) < 0)
		return -errno;
	text = meta_partial_to_json(p);
	if (!text)
		return -ENOMEM;
	names_of(file, &n);
	snprintf(tmp, sizeof(tmp), "%s.tmp", n.state);
	rc = write_temp(sl, tmp, text);
	free(text);
	if (rc)
		return rc;
	if (renameat(sl->partialfd, tmp, sl->partialfd, n.state) < 0) {
		rc = -errno;
		unlinkat(sl->partialfd, tmp, 0);
		return rc;
	}
	/* The state's new name and the temporary's own entry. */
	return sync_dir(sl->partialfd);
}

/* Loads a temporary's saved state; 0 when it is valid for a file of size bytes. */
static int load_state(struct store_local *sl, const char *file, off_t size, struct meta_partial *p)
{
	char *text = NULL;
	struct names n;
	int rc;

	names_of(file, &n);
	if ((rc = read_small_file(sl->partialfd, n.state, &text)))
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

	if (open_entry(sl->partialfd, file, O_RDWR, fd, &sb))
		return -ENOENT;
	if (load_state(sl, file, sb.st_size, p)) {
		close(*fd);
		*fd = -1;
		return -ENOENT;
	}
	*present = (uint64_t)sb.st_size;
	return 0;
}

/*
 * Step 2 of a commit: hard links to the old pair, when there is one, so that
 * a failure or a crash in steps 3-5 can put it back. Also makes step 1's
 * NAME.meta.tmp durable.
 */
static int set_aside(struct store_local *sl, const char *file, const struct names *n, bool *aside)
{
	struct stat sb;
	int rc;

	*aside = false;
	if ((rc = unlink_if_there(sl->partialfd, n->meta_old)) ||
	    (rc = unlink_if_there(sl->partialfd, n->old)))
		return rc;
	if (stat_entry(sl->dirfd, file, &sb) == 0 && stat_entry(sl->dirfd, n->meta, &sb) == 0) {
		/* The data first: recover() trusts a NAME.meta.old only with its NAME.old. */
		if (linkat(sl->dirfd, file, sl->partialfd, n->old, 0) < 0)
			return -errno;
		if (linkat(sl->dirfd, n->meta, sl->partialfd, n->meta_old, 0) < 0) {
			rc = -errno;
			unlinkat(sl->partialfd, n->old, 0);
			return rc;
		}
		*aside = true;
	}
	return sync_dir(sl->partialfd);
}

/*
 * Undoes steps 3-5 after a failure: the new metadata's temporary goes first,
 * so that a crash in here is never rolled forward onto the old copy. moved:
 * step 4 happened. False when it could not finish: the asides stay for
 * recover() at the next start.
 */
static bool put_back(struct store_local *sl, const char *file, const struct names *n, bool aside,
		     bool moved)
{
	if (unlink_if_there(sl->partialfd, n->meta_tmp) || sync_dir(sl->partialfd))
		return false;
	if (!aside) {
		if (moved)
			unlinkat(sl->dirfd, file, 0); /* no metadata: it would be dropped */
		return true;
	}
	/* A no-op when NAME is still the old copy (both names are links to it). */
	if (renameat(sl->partialfd, n->old, sl->dirfd, file) < 0 || sync_dir(sl->dirfd))
		return false;
	return renameat(sl->partialfd, n->meta_old, sl->dirfd, n->meta) == 0 &&
	       sync_dir(sl->dirfd) == 0;
}

/* Step 6 (with the checkpoint, once committed): what a commit leaves in .partial. */
static void clean_up(struct store_local *sl, const struct names *n, bool committed)
{
	unlinkat(sl->partialfd, n->meta_tmp, 0);
	unlinkat(sl->partialfd, n->meta_old, 0);
	unlinkat(sl->partialfd, n->old, 0);
	if (committed)
		unlinkat(sl->partialfd, n->state, 0);
	sync_dir(sl->partialfd);
}

/* See the steps at the top of this file. */
static int local_commit(struct store *st, const char *file, int fd, const struct meta *m)
{
	struct store_local *sl = local(st);
	bool aside = false, moved = false;
	char *text = meta_to_json(m);
	struct names n;
	int rc;

	if (!text)
		return -ENOMEM;
	names_of(file, &n);
	rc = fsync(fd) < 0 ? -errno : write_temp(sl, n.meta_tmp, text);
	free(text);
	if (rc)
		return rc;
	if ((rc = set_aside(sl, file, &n, &aside))) {
		unlinkat(sl->partialfd, n.meta_tmp, 0);
		return rc;
	}
	if ((rc = unlink_if_there(sl->dirfd, n.meta)) || (rc = sync_dir(sl->dirfd)))
		goto out_put_back;
	if (renameat(sl->partialfd, file, sl->dirfd, file) < 0) {
		rc = -errno;
		goto out_put_back;
	}
	moved = true;
	if ((rc = sync_dir(sl->dirfd)))
		goto out_put_back;
	if (renameat(sl->partialfd, n.meta_tmp, sl->dirfd, n.meta) < 0) {
		rc = -errno;
		goto out_put_back;
	}
	/* The new pair is whole: from here nothing is undone. */
	rc = sync_dir(sl->dirfd);
	clean_up(sl, &n, true);
	return rc;

out_put_back:
	if (put_back(sl, file, &n, aside, moved))
		clean_up(sl, &n, false);
	return rc;
}

static void local_discard_temp(struct store *st, const char *file)
{
	struct store_local *sl = local(st);
	struct names n;

	names_of(file, &n);
	/* A metadata temporary only ever describes this temporary: it goes first. */
	unlinkat(sl->partialfd, n.meta_tmp, 0);
	unlinkat(sl->partialfd, n.state, 0);
	unlinkat(sl->partialfd, file, 0);
}

static int local_evict(struct store *st, const char *file)
{
	struct store_local *sl = local(st);
	int had_file, had_meta;
	struct names n;

	names_of(file, &n);
	/* The metadata goes first: a crash in between leaves an orphan, never a lie. */
	had_meta = unlinkat(sl->dirfd, n.meta, 0) == 0;
	had_file = unlinkat(sl->dirfd, file, 0) == 0;
	if (!had_file && !had_meta)
		return -ENOENT;
	if (sync_dir(sl->dirfd))
		log_warn("cache: cannot make the eviction of %s/%s durable: %s", sl->dir, file,
			 strerror(errno));
	return 0;
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
	if (sl->lockfd >= 0)
		close(sl->lockfd); /* releases the lock */
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

/* Rolls forward a commit whose data moved into place: its metadata follows if it fits. */
static void roll_forward(struct store_local *sl, const char *file, const struct names *n)
{
	char *text = NULL;
	struct stat sb;
	struct meta m;

	if (read_small_file(sl->partialfd, n->meta_tmp, &text) == 0 &&
	    meta_from_json(text, &m) == 0 && stat_entry(sl->dirfd, file, &sb) == 0 &&
	    sb.st_size == m.size && renameat(sl->partialfd, n->meta_tmp, sl->dirfd, n->meta) == 0 &&
	    sync_dir(sl->dirfd) == 0)
		log_info("cache: completed the commit of %s/%s interrupted by a crash", sl->dir,
			 file);
	free(text);
}

/* Puts back the old pair of a commit that a crash interrupted before its metadata moved. */
static void roll_back(struct store_local *sl, const char *file, const struct names *n)
{
	if (!exists(sl->partialfd, n->meta_old))
		return;
	/* Without NAME.old, put_back() already moved it back: NAME is the old copy. */
	if (exists(sl->partialfd, n->old) &&
	    (renameat(sl->partialfd, n->old, sl->dirfd, file) < 0 || sync_dir(sl->dirfd)))
		return;
	if (renameat(sl->partialfd, n->meta_old, sl->dirfd, n->meta) == 0 &&
	    sync_dir(sl->dirfd) == 0)
		log_info("cache: restored %s/%s after a commit interrupted by a crash", sl->dir,
			 file);
}

/* A commit of file interrupted by a crash becomes a whole pair again (see the top). */
static void recover(struct store_local *sl, const char *file)
{
	struct names n;

	names_of(file, &n);
	if (!exists(sl->dirfd, n.meta)) {
		if (exists(sl->partialfd, n.meta_tmp) && !exists(sl->partialfd, file))
			roll_forward(sl, file, &n);
		else
			roll_back(sl, file, &n);
	}
	unlinkat(sl->partialfd, n.meta_tmp, 0);
	unlinkat(sl->partialfd, n.meta_old, 0);
	unlinkat(sl->partialfd, n.old, 0);
}

/* The file a commit's leftover in .partial belongs to; false for other names. */
static bool commit_leftover(const char *name, char *file, size_t len)
{
	static const char *const suffixes[] = {META_TEMP_SUFFIX, META_OLD_SUFFIX, OLD_SUFFIX};

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (has_suffix(name, suffixes[i])) {
			snprintf(file, len, "%.*s", (int)(strlen(name) - strlen(suffixes[i])),
				 name);
			return true;
		}
	}
	return false;
}

/* An earlier run's temporary: kept when its saved state lets it resume. */
static void sweep_entry(struct store_local *sl, const char *name)
{
	struct meta_partial p;
	struct stat sb;

	if (has_suffix(name, STATE_SUFFIX)) {
		char data[NAME_MAX + 1];
		snprintf(data, sizeof(data), "%.*s", (int)(strlen(name) - strlen(STATE_SUFFIX)),
			 name);
		if (stat_entry(sl->partialfd, data, &sb) == 0)
			return; /* judged with its data file */
	} else if (stat_entry(sl->partialfd, name, &sb) == 0 &&
		   load_state(sl, name, sb.st_size, &p) == 0) {
		log_info("cache: keeping partial download %s/%s/%s (%lld bytes) to resume", sl->dir,
			 PARTIAL_DIR, name, (long long)p.durable);
		return;
	}
	log_info("cache: removing leftover temporary %s/%s/%s", sl->dir, PARTIAL_DIR, name);
	unlinkat(sl->partialfd, name, 0);
	if (!has_suffix(name, STATE_SUFFIX)) {
		struct names n;
		names_of(name, &n);
		unlinkat(sl->partialfd, n.state, 0);
	}
}

/* Two passes: interrupted commits first, as they decide which temporaries remain. */
static void sweep_partial(struct store_local *sl)
{
	int fd = dup(sl->partialfd);
	char file[NAME_MAX + 1];
	struct dirent *de;
	DIR *d;

	if (fd < 0 || !(d = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.' && commit_leftover(de->d_name, file, sizeof(file)))
			recover(sl, file);
	}
	rewinddir(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] != '.' && !commit_leftover(de->d_name, file, sizeof(file)))
			sweep_entry(sl, de->d_name);
	}
	closedir(d);
}

int store_local_open(const char *dir, struct store **out, char *err, size_t errlen)
{
	struct store_local *sl = calloc(1, sizeof(*sl));
	int rc;

	if (!sl || !(sl->dir = strdup(dir))) {
		free(sl);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	sl->base.ops = &local_ops;
	sl->dirfd = sl->partialfd = sl->lockfd = -1;
	if ((rc = cachedir_open(dir, &sl->dirfd, err, errlen)) ||
	    (rc = cachedir_open_sub(sl->dirfd, dir, PARTIAL_DIR, &sl->partialfd, err, errlen)) ||
	    (rc = cachedir_lock(sl->dirfd, dir, LOCK_FILE, &sl->lockfd, err, errlen))) {
		local_destroy(&sl->base);
		return rc;
	}
	sweep_partial(sl);
	*out = &sl->base;
	return 0;
}
