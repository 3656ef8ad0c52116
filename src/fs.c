/*
 * fs.c - see fs.h. Built on libfuse's low-level API so that inode numbers
 * can stand for versions. This file holds the callbacks libfuse calls, the
 * mount and the session loop; what they stand on lives in
 *   fs_inode.c   inode numbers and the inode object of each version the
 *                kernel looked up (nlookup, forget), the attributes shown;
 *   fs_handle.c  open files, reads and command writes, parked requests.
 *
 * A data file's generation moves on whenever its committed copy changes
 * (a download or decompression commits, rm or delete evicts): each
 * generation is one version object of the dataset layer (dataset.h) and one
 * inode. The old inode keeps its own page cache and size in the kernel and
 * its own version here, so handles opened on it read the version they opened
 * to its end and can never see pages of another; the entry in the root is
 * invalidated (notify.c) so that new lookups get the new inode. getattr
 * answers from the inode's own version, never from the current one
 * (DESIGN.md invariant 5).
 *
 * Locking: this file takes no lock of its own; see fs_inode.h and
 * fs_handle.c, and DESIGN.md for the whole order.
 */
#define FUSE_USE_VERSION 312
#include "fs.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#include "fs_handle.h"
#include "fs_inode.h"
#include "log.h"
#include "notify.h"
#include "replicate.h"
#include "schedule.h"

#define TIMEOUT_S      1.0
#define FS_MAX_THREADS "64"

/* Set before the mount; read-only afterwards, except session (set by fs_main around the loop). */
static const struct config *config;
static _Atomic(struct fuse_session *) session;

/* A data file's name in the root: 0 with its dataset and kind, or -ENOENT. */
static int data_name(fuse_ino_t parent, const char *name, int *ds, enum file_kind *kind)
{
	return parent == FS_INO_ROOT && catalog_lookup_file(name, ds, kind) == 0 ? 0 : -ENOENT;
}

/*
 * The attributes of ino (v its version for a data inode, else NULL); false
 * when the current version of a data file has a size not known yet (it
 * shows 0 bytes then). Known is asked first, so that a true answer comes
 * with the known size; only the current version can be unknown, an older
 * one's size is its copy's or its feed's. *timeout: how long the kernel may
 * keep them. Only a committed copy's are final: an arriving version's are
 * never cached (0), so that the kernel asks again (getattr, which waits for
 * an unknown size) before a stat uses them, and a size given before the
 * bytes came (the probe's HEAD) follows the transfer's own at the next ask.
 */
static bool inode_attr(fuse_ino_t ino, const struct fs_node *n, struct dataset_version *v,
		       struct stat *st, double *timeout)
{
	int64_t size, mtime;
	bool known = n->type != NODE_DATA ||
		     dataset_version_gen(v) != dataset_generation(n->ds, n->kind) ||
		     dataset_size_known(n->ds, n->kind, &size, &mtime);

	fs_inode_attr(ino, n, v, st);
	*timeout = n->type != NODE_DATA || (known && dataset_version_committed(v)) ? TIMEOUT_S : 0;
	return known;
}

/*
 * A lookup never waits: the kernel holds the directory's lock (shared)
 * across it, and an invalidation (notify.c) or an rm queued for that lock
 * exclusively would then hold every later lookup and readdir of the root
 * behind it, .control/ included. It answers with attributes not cached;
 * the getattr that follows is what waits.
 */
static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct dataset_version *v = NULL;
	struct fs_node n;
	enum file_kind kind;
	int ds, ctl, rc = 0;

	memset(&e, 0, sizeof(e));
	if (parent == FS_INO_ROOT && strcmp(name, CONTROL_DIR) == 0)
		e.ino = FS_INO_CONTROL_DIR;
	else if (data_name(parent, name, &ds, &kind) == 0)
		rc = fs_inode_lookup(ds, kind, &e.ino, &v); /* one lookup counted on its inode */
	else if (parent == FS_INO_CONTROL_DIR && (ctl = control_lookup(name)) >= 0)
		e.ino = FS_INO_CONTROL_BASE + (fuse_ino_t)ctl;
	else
		rc = -ENOENT;
	if (rc || (rc = fs_inode_node(e.ino, &n))) {
		fuse_reply_err(req, -rc);
		return;
	}
	inode_attr(e.ino, &n, v, &e.attr, &e.attr_timeout);
	e.entry_timeout = TIMEOUT_S;
	dataset_version_put(v);
	if (fuse_reply_entry(req, &e) == -ENOENT && n.type == NODE_DATA)
		fs_inode_forget(e.ino,
				1); /* the lookup was interrupted: the kernel never counted it */
}

/* The kernel drops nlookup of its lookups on ino (libfuse's passthrough_ll idiom). */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_inode_forget(ino, nlookup);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fs_inode_forget(forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/*
 * A getattr parked until the size of its inode's version is known, parked
 * like an open (see fs_handle.c's header: who replies, ordering). It holds
 * its own reference on the version, so that the answer is that inode's.
 */
struct parked_attr {
	struct dataset_size_waiter w; /* ready() gets &p->w */
	fuse_req_t req;
	fuse_ino_t ino;
	struct fs_node n;
	struct dataset_version *v; /* a reference, for a data inode */
};

/* The one reply of a getattr that waited, or was to: rc as the size waiter's ready(). */
static void answer_attr(struct parked_attr *p, int rc)
{
	struct stat st;
	double timeout;

	if (rc) {
		fuse_reply_err(p->req, -rc);
	} else {
		inode_attr(p->ino, &p->n, p->v, &st, &timeout);
		fuse_reply_attr(p->req, &st, timeout);
	}
	dataset_version_put(p->v);
	free(p);
}

static void attr_ready(struct dataset_size_waiter *w, int rc)
{
	struct parked_attr *p = (struct parked_attr *)w;

	fuse_req_interrupt_func(p->req, NULL, NULL); /* waits out a running interrupt callback */
	answer_attr(p, rc);
}

/* libfuse calls this, holding the request's lock, when the kernel interrupts it. */
static void attr_interrupted(fuse_req_t req, void *data)
{
	struct parked_attr *p = data;

	(void)req;
	if (dataset_size_wait_cancel(&p->w))
		answer_attr(p, -EINTR);
}

/*
 * Answers from the inode's own version. By default (not fast_stat) the
 * current version of a .tsv whose size is not known yet parks until it is
 * (dataset_size_wait_start(), which starts the fetch a read would), so that
 * no tool trusting st_size sees a short file (DESIGN.md invariant 14). A
 * .tsv.gz's size is known from the probe at mount or its download's
 * response; one not known (an origin that did not answer) shows 0 at once.
 */
static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct parked_attr *p;
	struct stat st;
	double timeout;
	int rc;

	(void)fi; /* the attributes are the inode's own version's, whichever handle asks */
	if (!(p = calloc(1, sizeof(*p)))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->req = req;
	p->ino = ino;
	if (fs_inode_node(ino, &p->n) ||
	    (p->n.type == NODE_DATA && !(p->v = fs_inode_version(ino)))) {
		answer_attr(p, -ENOENT);
		return;
	}
	if (inode_attr(ino, &p->n, p->v, &st, &timeout) || p->n.kind != KIND_TSV ||
	    config->fast_stat) {
		answer_attr(p, 0);
		return;
	}
	dataset_size_waiter_init(&p->w, p->n.ds, p->n.kind, attr_ready);
	/* Before parking, so that no interrupt is lost; until then it only marks p cancelled. */
	fuse_req_interrupt_func(req, attr_interrupted, p);
	rc = dataset_size_wait_start(&p->w);
	if (rc == -EINPROGRESS)
		return; /* the worker goes back to the kernel; a transfer or an interrupt answers */
	fuse_req_interrupt_func(req, NULL, NULL);
	answer_attr(p, rc);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct stat st;
	struct fs_node n;

	(void)attr, (void)fi;
	if (fs_inode_node(ino, &n) || fs_inode_stat(ino, &st)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* The O_TRUNC of a shell's '>' must reach the command: a no-op on command files. */
	if (to_set != FUSE_SET_ATTR_SIZE) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (n.type != NODE_CONTROL || !control_is_command(n.ctl) || fs_may_change(req)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fuse_reply_attr(req, &st, TIMEOUT_S);
}

/* A readdir reply being filled: entries before `from` are skipped, the rest added while they fit.
 */
struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, len;
	off_t index, from;
	bool full;
};

static void add_entry(struct dirbuf *d, const char *name, fuse_ino_t ino, mode_t mode)
{
	struct stat st = {.st_ino = ino, .st_mode = mode};
	size_t n;

	if (d->index++ < d->from || d->full)
		return;
	n = fuse_add_direntry(d->req, d->buf + d->len, d->size - d->len, name, &st, d->index);
	if (n > d->size - d->len) {
		d->full = true; /* the rest comes with the next call, from this index */
		return;
	}
	d->len += n;
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dirbuf d = {.req = req, .size = size, .from = off};

	(void)fi;
	if (ino != FS_INO_ROOT && ino != FS_INO_CONTROL_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!(d.buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	add_entry(&d, ".", ino, S_IFDIR);
	add_entry(&d, "..", FS_INO_ROOT, S_IFDIR);
	if (ino == FS_INO_CONTROL_DIR) {
		for (int i = 0; i < CTL_COUNT; i++)
			add_entry(&d, control_name((enum control_file)i),
				  FS_INO_CONTROL_BASE + (fuse_ino_t)i, S_IFREG);
	} else {
		add_entry(&d, CONTROL_DIR, FS_INO_CONTROL_DIR, S_IFDIR);
		for (int i = 0; i < CATALOG_COUNT; i++) {
			for (int k = KIND_GZ; k <= KIND_TSV; k++) {
				enum file_kind kind = (enum file_kind)k;
				add_entry(&d, catalog_file(i, kind),
					  fs_inode_data_ino(i, kind, dataset_generation(i, kind)),
					  S_IFREG);
			}
		}
	}
	fuse_reply_buf(req, d.buf, d.len);
	free(d.buf);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs_node n;

	if (fs_inode_node(ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fs_handle_open(req, ino, &n, fi);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	fs_handle_read(req, size, off, fi);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	int rc;

	(void)ino, (void)off;
	if ((rc = fs_handle_write(req, buf, size, fi)))
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fs_handle_release(fi);
	fuse_reply_err(req, 0);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	enum file_kind kind;
	int ds;

	if (data_name(parent, name, &ds, &kind)) {
		bool control = (parent == FS_INO_ROOT && strcmp(name, CONTROL_DIR) == 0) ||
			       (parent == FS_INO_CONTROL_DIR && control_lookup(name) >= 0);
		fuse_reply_err(req, control ? EPERM : ENOENT);
		return;
	}
	if (fs_may_change(req)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	dataset_evict(ds, kind);
	fuse_reply_err(req, 0);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EACCES);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EACCES);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	(void)parent, (void)name, (void)mode, (void)fi;
	fuse_reply_err(req, EACCES);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EACCES);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EPERM);
}

/*
 * access(2) without default_permissions reaches us instead of the kernel's
 * mode check: answer it from the modes shown, with fs_may_change()'s notion of
 * the owner, so that `test -w` tells the truth to other users.
 */
static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	int allowed;

	if (fs_inode_stat(ino, &st)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (ctx->uid == 0)
		allowed = R_OK | W_OK | (st.st_mode & 0111 ? X_OK : 0);
	else if (fs_may_change(req) == 0)
		allowed = (int)(st.st_mode >> 6) & 7;
	else
		allowed = (int)st.st_mode & 7; /* group bits are the same as others' */
	fuse_reply_err(req, (mask & ~allowed) ? EACCES : 0);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs st;

	(void)ino;
	if (statvfs(config->cache_dir, &st) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &st);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	notify_start(atomic_load(&session));
	/* Reads reply from file descriptors: let the kernel move the pages. */
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	if (config->max_read)
		conn->max_read = config->max_read;
	(void)replicate_start(); /* logs its failure: uploads then wait for the next mount */
	datasets_resume();
	schedule_start(config);
	log_info("mounted: origin %s, cache %s", config->origin_shown, config->cache_dir);
}

static void ll_destroy(void *userdata)
{
	(void)userdata;
	schedule_stop();
	datasets_shutdown();
	replicate_stop(); /* after the transfers that queue uploads, before the store goes */
	jobs_shutdown();
	notify_end();
	fs_handle_answer_parked();
	fs_handle_free_all();
	fs_inode_forget_all();
	log_info("unmounted");
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init,
    .destroy = ll_destroy,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readdir = ll_readdir,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .release = ll_release,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .create = ll_create,
    .symlink = ll_symlink,
    .link = ll_link,
    .rename = ll_rename,
    .statfs = ll_statfs,
    .access = ll_access,
};

static int serve(struct fuse_session *se, const struct fuse_cmdline_opts *opts)
{
	struct fuse_loop_config *loop;
	int rc;

	if (opts->singlethread)
		return fuse_session_loop(se);
	loop = fuse_loop_cfg_create();
	if (!loop)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(loop, (unsigned)opts->clone_fd);
	/* libfuse 3.14 defaults this to UINT_MAX and then complains about it. */
	fuse_loop_cfg_set_idle_threads(loop,
				       opts->max_idle_threads > 1000 ? 10 : opts->max_idle_threads);
	fuse_loop_cfg_set_max_threads(loop, opts->max_threads);
	rc = fuse_session_loop_mt(se, loop);
	fuse_loop_cfg_destroy(loop);
	return rc;
}

int fs_main(struct fuse_args *args, const struct config *cfg)
{
	struct fuse_cmdline_opts opts;
	struct fuse_session *se;
	int rc = 1;

	config = cfg;
	fs_inode_init(clock_wall());
	/*
	 * No request waiting for a download holds a worker (they park), so
	 * this bounds requests being served at once, not waiting; libfuse's
	 * default is 10 (an explicit -o max_threads, parsed later, still wins).
	 */
	if (fuse_opt_insert_arg(args, 1, "-omax_threads=" FS_MAX_THREADS) != 0)
		return 1;
	if (fuse_parse_cmdline(args, &opts) != 0)
		return 1;
	if (!opts.mountpoint) {
		fprintf(stderr, "imdbfs: no mountpoint given (see imdbfs --help)\n");
		return 1;
	}
	se = fuse_session_new(args, &ops, sizeof(ops), NULL);
	if (!se)
		goto out;
	datasets_on_change(notify_file_changed);
	if (fuse_set_signal_handlers(se) != 0)
		goto out_destroy;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	if (fuse_daemonize(opts.foreground) != 0)
		goto out_unmount;
	atomic_store(&session, se);
	rc = serve(se, &opts);
	/* No worker is left to park more: answer those parked while the kernel still listens. */
	fs_handle_answer_parked();
	datasets_cancel_opens();
	/* The loop returns the signal that stopped it (> 0): a requested stop, not a failure. */
	rc = rc < 0 ? 1 : 0;
out_unmount:
	atomic_store(&session, NULL);
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
out:
	free(opts.mountpoint);
	return rc;
}
