/* cachedir.c - see cachedir.h */
#include "cachedir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

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

/* Opens dirfd/name (dirfd may be AT_FDCWD) as a directory of ours no one else may write. */
static int open_own_dir(int dirfd, const char *name, const char *shown, int *fdp, char *err,
			size_t errlen)
{
	struct stat sb;
	int rc;

	*fdp = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*fdp < 0) {
		rc = -errno;
		if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
			snprintf(err, errlen, "%s is a symbolic link: give the directory itself",
				 shown);
		else
			snprintf(err, errlen, "%s: %s", shown, strerror(-rc));
		return rc;
	}
	if (fstat(*fdp, &sb) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", shown, strerror(-rc));
		return rc;
	}
	if (sb.st_uid != geteuid()) {
		snprintf(err, errlen, "%s is owned by uid %u, not by this daemon's uid %u", shown,
			 (unsigned)sb.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
		snprintf(err, errlen,
			 "%s is writable by group or others (mode %04o): chmod go-w it", shown,
			 (unsigned)(sb.st_mode & 07777));
		return -EPERM;
	}
	if (faccessat(*fdp, ".", W_OK | X_OK, AT_EACCESS) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", shown, strerror(-rc));
		return rc;
	}
	return 0;
}

int cachedir_open(const char *path, int *fd, char *err, size_t errlen)
{
	char shown[PATH_MAX + 16];
	int rc;

	*fd = -1;
	snprintf(shown, sizeof(shown), "cache_dir %s", path);
	if ((rc = make_dirs(path))) {
		snprintf(err, errlen, "%s: %s", shown, strerror(-rc));
		return rc;
	}
	return open_own_dir(AT_FDCWD, path, shown, fd, err, errlen);
}

int cachedir_open_sub(int dirfd, const char *path, const char *name, int *fd, char *err,
		      size_t errlen)
{
	char shown[PATH_MAX + NAME_MAX + 16];

	*fd = -1;
	snprintf(shown, sizeof(shown), "cache_dir %s/%s", path, name);
	if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST) {
		int rc = -errno;
		snprintf(err, errlen, "%s: %s", shown, strerror(-rc));
		return rc;
	}
	return open_own_dir(dirfd, name, shown, fd, err, errlen);
}

int cachedir_lock(int dirfd, const char *path, const char *name, int *fd, char *err, size_t errlen)
{
	struct stat sb;

	*fd = openat(dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (*fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "cache_dir %s: %s: %s", path, name, strerror(-rc));
		return rc;
	}
	if (fstat(*fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
		snprintf(err, errlen, "cache_dir %s: %s is not a file of ours", path, name);
		return -EPERM;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK) {
		snprintf(err, errlen, "cache_dir %s is in use by another imdbfs", path);
		return -EBUSY;
	}
	/* A filesystem without locks: run unguarded rather than not at all. */
	log_warn("cache: cannot lock %s/%s: %s", path, name, strerror(errno));
	return 0;
}
