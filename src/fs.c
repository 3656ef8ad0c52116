/* fs.c - see fs.h */
#define FUSE_USE_VERSION 35
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "catalog.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "dataset.h"
#include "feed.h"
#include "job.h"
#include "log.h"
#include "metrics.h"

enum node_type { NODE_ROOT, NODE_CONTROL_DIR, NODE_DATA, NODE_CONTROL };

struct node {
	enum node_type type;
	int ds;		       /* NODE_DATA */
	enum file_kind kind;   /* NODE_DATA */
	enum control_file ctl; /* NODE_CONTROL */
};

/* An open file. Control files hold the text rendered at open (procfs-like). */
struct handle {
	struct node node;
	struct dataset_reader reader; /* NODE_DATA */
	char *text;		      /* NODE_CONTROL, opened for reading */
	size_t len;
};

/* Set before the mount; read-only afterwards, except fuse (set once in init). */
static const struct config *config;
static double mounted_at;
static _Atomic(struct fuse *) fuse_instance;

static int resolve(const char *path, struct node *n)
{
	int ctl;

	if (strcmp(path, "/") == 0) {
		n->type = NODE_ROOT;
		return 0;
	}
	if (path[0] != '/')
		return -ENOENT;
	path++;
	if (strcmp(path, CONTROL_DIR) == 0) {
		n->type = NODE_CONTROL_DIR;
		return 0;
	}
	if (strncmp(path, CONTROL_DIR "/", sizeof(CONTROL_DIR)) == 0) {
		ctl = control_lookup(path + sizeof(CONTROL_DIR));
		if (ctl < 0)
			return -ENOENT;
		n->type = NODE_CONTROL;
		n->ctl = (enum control_file)ctl;
		return 0;
	}
	n->type = NODE_DATA;
	return catalog_lookup_file(path, &n->ds, &n->kind);
}

static struct handle *handle_of(struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/*
 * The size seen through an open handle is that of the version it holds, so
 * that a refresh or eviction cannot cut short a reader (the kernel asks with
 * the handle before reading past what it believes is the end).
 */
static int64_t handle_size(struct handle *h, int64_t current)
{
	struct stat sb;
	uint64_t filled;
	int64_t size;
	int ended, err;

	if (h->node.type != NODE_DATA)
		return current;
	if (h->reader.fd >= 0)
		return fstat(h->reader.fd, &sb) == 0 ? (int64_t)sb.st_size : current;
	feed_progress(h->reader.feed, &filled, &size, &ended, &err);
	return size >= 0 ? size : current;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct node n;
	int64_t size, mtime;
	int rc;

	/* An evicted file has no path any more; its open handles still stat. */
	if (fi)
		n = handle_of(fi)->node;
	else if ((rc = resolve(path, &n)))
		return rc;
	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_mtime = st->st_ctime = st->st_atime = (time_t)mounted_at;
	switch (n.type) {
	case NODE_ROOT:
	case NODE_CONTROL_DIR:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = n.type == NODE_ROOT ? 3 : 2;
		break;
	case NODE_CONTROL:
		st->st_mode = S_IFREG | (control_is_command(n.ctl) ? 0644 : 0444);
		st->st_nlink = 1;
		st->st_mtime = st->st_ctime = st->st_atime = time(NULL);
		break;
	case NODE_DATA:
		dataset_stat(n.ds, n.kind, &size, &mtime);
		if (fi)
			size = handle_size(handle_of(fi), size);
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)size;
		st->st_blocks = (blkcnt_t)((size + 511) / 512);
		if (mtime > 0)
			st->st_mtime = st->st_ctime = st->st_atime = (time_t)mtime;
		break;
	}
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct node n;
	int rc;

	(void)off, (void)fi, (void)flags;
	if ((rc = resolve(path, &n)))
		return rc;
	if (n.type != NODE_ROOT && n.type != NODE_CONTROL_DIR)
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	if (n.type == NODE_CONTROL_DIR) {
		for (int i = 0; i < CTL_COUNT; i++)
			fill(buf, control_name((enum control_file)i), NULL, 0, 0);
		return 0;
	}
	fill(buf, CONTROL_DIR, NULL, 0, 0);
	for (int i = 0; i < CATALOG_COUNT; i++) {
		fill(buf, catalog_file(i, KIND_GZ), NULL, 0, 0);
		fill(buf, catalog_file(i, KIND_TSV), NULL, 0, 0);
	}
	return 0;
}

static int request_interrupted(void *ctx)
{
	(void)ctx;
	return fuse_interrupted();
}

static int open_data(struct handle *h, struct fuse_file_info *fi)
{
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EACCES;
	rc = dataset_open(h->node.ds, h->node.kind, &h->reader, request_interrupted, NULL);
	if (rc)
		return rc;
	/*
	 * A committed copy never changes under its inode number, and every
	 * replacement invalidates the kernel's cache: let the page cache keep it.
	 * A file still arriving has no final size: direct I/O reads every byte.
	 */
	fi->keep_cache = h->reader.fd >= 0;
	fi->direct_io = h->reader.fd < 0;
	return 0;
}

static int open_control(struct handle *h, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;

	if (acc != O_RDONLY && !control_is_command(h->node.ctl))
		return -EACCES;
	fi->direct_io = 1;
	if (acc == O_WRONLY)
		return 0;
	return control_render(h->node.ctl, &h->text, &h->len);
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = calloc(1, sizeof(*h));
	int rc;

	if (!h)
		return -ENOMEM;
	h->reader.fd = -1;
	rc = resolve(path, &h->node);
	if (!rc && h->node.type == NODE_DATA)
		rc = open_data(h, fi);
	else if (!rc && h->node.type == NODE_CONTROL)
		rc = open_control(h, fi);
	else if (!rc)
		rc = -EISDIR;
	if (rc) {
		free(h->text);
		free(h);
		return rc;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	return 0;
}

static int read_control(struct handle *h, struct fuse_bufvec **bufp, size_t size, off_t off)
{
	struct fuse_bufvec *bv = malloc(sizeof(*bv));
	size_t n = (size_t)off < h->len ? h->len - (size_t)off : 0;

	if (!bv)
		return -ENOMEM;
	if (n > size)
		n = size;
	*bv = FUSE_BUFVEC_INIT(n);
	bv->buf[0].mem = malloc(n ? n : 1);
	if (!bv->buf[0].mem) {
		free(bv);
		return -ENOMEM;
	}
	memcpy(bv->buf[0].mem, h->text + off, n);
	*bufp = bv;
	return 0;
}

static int read_data(struct handle *h, struct fuse_bufvec **bufp, size_t size, off_t off)
{
	struct fuse_bufvec *bv = malloc(sizeof(*bv));
	int fd = h->reader.fd;
	int64_t n = (int64_t)size;

	if (!bv)
		return -ENOMEM;
	if (fd < 0) {
		n = feed_wait(h->reader.feed, (uint64_t)off, size, 1, request_interrupted, NULL);
		if (n < 0) {
			free(bv);
			metrics_add(M_READ_ERRORS, 1);
			return (int)n;
		}
		fd = feed_fd(h->reader.feed);
	}
	*bv = FUSE_BUFVEC_INIT((size_t)n);
	bv->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv->buf[0].fd = fd;
	bv->buf[0].pos = off;
	*bufp = bv;
	metrics_add(M_READS, 1);
	metrics_add(M_READ_BYTES, (uint64_t)n);
	return 0;
}

static int fs_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);

	(void)path;
	if (h->node.type == NODE_CONTROL)
		return h->text ? read_control(h, bufp, size, off) : -EBADF;
	return read_data(h, bufp, size, off);
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);
	int rc;

	(void)path, (void)off;
	if (h->node.type != NODE_CONTROL || !control_is_command(h->node.ctl))
		return -EACCES;
	rc = control_write(h->node.ctl, buf, size);
	return rc ? rc : (int)size;
}

static int fs_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = handle_of(fi);

	(void)path;
	dataset_close(&h->reader);
	free(h->text);
	free(h);
	return 0;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct node n;
	int rc;

	(void)size, (void)fi;
	if ((rc = resolve(path, &n)))
		return rc;
	/* The O_TRUNC of a shell's '>' must reach the command, so it is a no-op here. */
	if (n.type == NODE_CONTROL && control_is_command(n.ctl))
		return 0;
	return -EACCES;
}

static int fs_unlink(const char *path)
{
	struct node n;
	int rc;

	if ((rc = resolve(path, &n)))
		return rc;
	if (n.type != NODE_DATA)
		return -EPERM;
	dataset_evict(n.ds, n.kind);
	return 0;
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)path, (void)mode, (void)fi;
	return -EACCES;
}

static int fs_mknod(const char *path, mode_t mode, dev_t dev)
{
	(void)path, (void)mode, (void)dev;
	return -EACCES;
}

static int fs_mkdir(const char *path, mode_t mode)
{
	(void)path, (void)mode;
	return -EACCES;
}

static int fs_rmdir(const char *path)
{
	(void)path;
	return -EPERM;
}

static int fs_symlink(const char *from, const char *to)
{
	(void)from, (void)to;
	return -EACCES;
}

static int fs_link(const char *from, const char *to)
{
	(void)from, (void)to;
	return -EPERM;
}

static int fs_rename(const char *from, const char *to, unsigned int flags)
{
	(void)from, (void)to, (void)flags;
	return -EPERM;
}

static int fs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)path, (void)mode, (void)fi;
	return -EPERM;
}

static int fs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)path, (void)uid, (void)gid, (void)fi;
	return -EPERM;
}

static int fs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)path, (void)tv, (void)fi;
	return -EPERM;
}

static int fs_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	return statvfs(config->cache_dir, st) < 0 ? -errno : 0;
}

/* Runs on a transfer thread whenever a committed file changes. */
static void invalidate(const char *file)
{
	struct fuse *f = atomic_load(&fuse_instance);
	char path[PATH_MAX];
	int rc;

	if (!f)
		return;
	snprintf(path, sizeof(path), "/%s", file);
	rc = fuse_invalidate_path(f, path);
	if (rc && rc != -ENOENT)
		log_debug("invalidate %s: %s", path, strerror(-rc));
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Reads reply from file descriptors: let the kernel move the pages. */
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	cfg->entry_timeout = 1.0;
	cfg->attr_timeout = 1.0;
	cfg->negative_timeout = 1.0;
	/* rm evicts at once: open handles hold their own descriptor, no hiding needed. */
	cfg->hard_remove = 1;
	atomic_store(&fuse_instance, fuse_get_context()->fuse);
	datasets_on_change(invalidate);
	datasets_resume();
	log_info("mounted: origin %s, cache %s", config->origin, config->cache_dir);
	return NULL;
}

static void fs_destroy(void *private_data)
{
	(void)private_data;
	atomic_store(&fuse_instance, NULL);
	datasets_shutdown();
	jobs_shutdown();
	log_info("unmounted");
}

static const struct fuse_operations ops = {
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .read_buf = fs_read_buf,
    .write = fs_write,
    .release = fs_release,
    .truncate = fs_truncate,
    .unlink = fs_unlink,
    .create = fs_create,
    .mknod = fs_mknod,
    .mkdir = fs_mkdir,
    .rmdir = fs_rmdir,
    .symlink = fs_symlink,
    .link = fs_link,
    .rename = fs_rename,
    .chmod = fs_chmod,
    .chown = fs_chown,
    .utimens = fs_utimens,
    .statfs = fs_statfs,
    .init = fs_init,
    .destroy = fs_destroy,
};

int fs_main(struct fuse_args *args, const struct config *cfg)
{
	config = cfg;
	mounted_at = clock_wall();
	return fuse_main(args->argc, args->argv, &ops, NULL);
}
