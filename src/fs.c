/*
 * fs.c - see fs.h. Built on libfuse's low-level API so that inode numbers
 * can stand for versions.
 *
 * Inode numbers:
 *   1               the root
 *   2               .control/
 *   3 + id          .control/<id>
 *   64 + 16g + s    generation g of data file slot s (s = 2 * dataset + kind)
 *
 * A data file's generation moves on whenever its committed copy changes
 * (a download or decompression commits, rm or delete evicts). The old inode
 * keeps its own page cache and size in the kernel, so handles opened on it
 * read the version they opened to its end and can never see pages of
 * another; the entry in the root is invalidated so that new lookups get the
 * new inode. An inode's attributes are always its own version's, which the
 * kernel applies to every handle on it: the dataset layer remembers the last
 * few replaced copies, and an older inode takes them from a handle of that
 * version still open on it. Committed copies are read through the page cache
 * (keep_cache) of their own inode; a file still arriving is read with
 * direct I/O. An open through the inode of a version that has gone reads
 * that version while a handle holds it (see open_old_version()).
 *
 * Handles: the kernel may process a release while a read of the same file
 * is still being served (parallel direct I/O requests), so fh is an id that
 * requests look up and reference under gens_lock; the memory goes when the
 * last reference does.
 *
 * Generations belong to the dataset layer (dataset_generation()), which
 * moves them under its own lock together with the copy they stand for.
 *
 * Parked requests: no request waits on a worker thread. A read past the
 * bytes a feed has (read_data) becomes a struct parked on that feed
 * (feed_park); an open of a file whose transfer has no feed yet (open_data)
 * becomes a struct parked_open on its dataset (dataset_open_start). The
 * worker returns to the kernel at once, so max_threads bounds requests being
 * served, never requests waiting, and 1,000 waiting reads cost memory only.
 *
 *   - Who replies: exactly one party, whoever takes the request off the list
 *     it is parked on. The transfer thread whose feed_grow()/feed_finish()
 *     (or publish/end of the transfer, for opens) makes it answerable calls
 *     its ready() with no lock held; the interrupt callback that libfuse runs
 *     when the kernel sends FUSE_INTERRUPT (fuse_req_interrupt_func(), no
 *     polling) replies EINTR only when feed_unpark()/dataset_open_cancel()
 *     returns true; at the end of the session loop answer_all_parked() and
 *     datasets_cancel_opens() reply EIO to whatever is left, before the
 *     unmount, and destroy does it once more after the transfers stopped.
 *   - Ordering: the interrupt callback is registered before the park, and an
 *     interrupt that comes first only marks the request cancelled (the park
 *     then returns -EINTR and the worker replies). Every party but the
 *     interrupt callback first calls fuse_req_interrupt_func(req, NULL,
 *     NULL), which waits out a callback running on that request and stops
 *     new ones, and only then replies and frees: the callback never sees
 *     freed memory.
 *   - A release may come while a read is parked (its process was killed):
 *     the parked read holds a handle reference, so the handle, its feed and
 *     its descriptor stay until that read is answered.
 *
 * Locking: gens_lock guards the list of open handles, their reference
 * counts and next_handle_id. A parked read is on its feed's list, guarded by
 * that feed's lock (a leaf); a parked open is on its dataset's list, guarded
 * by the dataset lock. Lock order: libfuse's per-request lock (held around
 * the interrupt callback) before the feed or dataset lock; nothing replies
 * or calls fuse_req_interrupt_func() holding a feed or dataset lock, and
 * gens_lock is never held while answering (answering drops a handle
 * reference, which takes it).
 *
 * Descriptors (fdshare.h): handles on a committed copy share its version's
 * descriptor; at most fdshare_handle_bound() data handles exist at once
 * (data_handles), an open beyond fails with EMFILE.
 */
#define FUSE_USE_VERSION 312
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
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
#include "fdshare.h"
#include "feed.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "replicate.h"
#include "schedule.h"

#define INO_ROOT	 1
#define INO_CONTROL_DIR	 2
#define INO_CONTROL_BASE 3
#define INO_DATA_BASE	 64
#define SLOT_BITS	 16 /* > 2 * CATALOG_COUNT */
#define TIMEOUT_S	 1.0
#define FS_MAX_THREADS	 "64"

enum node_type { NODE_ROOT, NODE_CONTROL_DIR, NODE_DATA, NODE_CONTROL };

struct node {
	enum node_type type;
	int ds;		       /* NODE_DATA */
	enum file_kind kind;   /* NODE_DATA */
	uint64_t gen;	       /* NODE_DATA */
	enum control_file ctl; /* NODE_CONTROL */
};

/* An open file. Control files hold the text rendered at open (procfs-like). */
struct handle {
	uint64_t id; /* what the kernel holds as fh */
	int refs;    /* guarded by gens_lock: the open file, and each request using it */
	struct node node;
	fuse_ino_t ino;
	struct dataset_reader reader; /* NODE_DATA */
	int64_t size; /* NODE_DATA with a committed copy: its size (see handle_size) */
	int64_t mtime;
	struct handle *next; /* guarded by gens_lock: open_handles */
	char *text;	     /* NODE_CONTROL opened for reading */
	size_t len;
	bool counted; /* in data_handles */
};

/* Set before the mount; read-only afterwards, except session (set by fs_main around the loop). */
static const struct config *config;
static double mounted_at;
static _Atomic(struct fuse_session *) session;

static pthread_mutex_t gens_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *open_handles; /* guarded by gens_lock: every open handle */
static uint64_t next_handle_id = 1; /* guarded by gens_lock */
/* Data handles in memory, opens included, bounded by fdshare_handle_bound(). */
static atomic_long data_handles;
static atomic_long bound_logged_at; /* seconds of the monotonic clock */

/*
 * Who may change the mount: evict (rm), truncate, or write a command. Under
 * allow_other every local user reaches it, and reading stays open to them;
 * changes are the mounting user's (the daemon's uid) and root's, as the
 * modes shown say (root dir 0755 and command files 0644, owned by that user).
 */
static int may_change(fuse_req_t req)
{
	uid_t uid = fuse_req_ctx(req)->uid;

	return uid == 0 || uid == getuid() ? 0 : -EACCES;
}

static int slot_of(int ds, enum file_kind kind)
{
	return ds * 2 + (int)kind;
}

static fuse_ino_t data_ino(int ds, enum file_kind kind, uint64_t gen)
{
	return INO_DATA_BASE + gen * SLOT_BITS + (uint64_t)slot_of(ds, kind);
}

static int node_of_ino(fuse_ino_t ino, struct node *n)
{
	memset(n, 0, sizeof(*n));
	if (ino == INO_ROOT) {
		n->type = NODE_ROOT;
	} else if (ino == INO_CONTROL_DIR) {
		n->type = NODE_CONTROL_DIR;
	} else if (ino >= INO_CONTROL_BASE && ino < INO_CONTROL_BASE + CTL_COUNT) {
		n->type = NODE_CONTROL;
		n->ctl = (enum control_file)(ino - INO_CONTROL_BASE);
	} else if (ino >= INO_DATA_BASE) {
		int slot = (int)((ino - INO_DATA_BASE) % SLOT_BITS);
		if (slot >= 2 * CATALOG_COUNT)
			return -ENOENT;
		n->type = NODE_DATA;
		n->ds = slot / 2;
		n->kind = (enum file_kind)(slot % 2);
		n->gen = (ino - INO_DATA_BASE) / SLOT_BITS;
	} else {
		return -ENOENT;
	}
	return 0;
}

/* The size of a data handle's version: its committed copy's, or its feed's as far as known. */
static int64_t handle_size(const struct handle *h)
{
	uint64_t filled;
	int64_t size;
	int ended, err;

	if (h->reader.fd >= 0)
		return h->size;
	feed_progress(h->reader.feed, &filled, &size, &ended, &err);
	return size >= 0 ? size : (int64_t)filled;
}

/* Whether h reads data of its inode's own version (not one opened through an older inode). */
static bool reads_own_version(const struct handle *h)
{
	return h->node.type == NODE_DATA && (h->reader.fd >= 0 || h->reader.feed) &&
	       h->reader.gen == h->node.gen;
}

/* An open handle reading ino's own version (a committed copy, if copy); gens_lock held. */
static struct handle *own_version_handle_locked(fuse_ino_t ino, bool copy)
{
	struct handle *h;

	for (h = open_handles; h; h = h->next)
		if (h->ino == ino && reads_own_version(h) && (!copy || h->reader.fd >= 0))
			break;
	return h;
}

/* The attributes of an inode that is no longer current, from a handle still open on it. */
static bool old_version_attr(fuse_ino_t ino, int64_t *size, int64_t *mtime)
{
	struct handle *h;

	pthread_mutex_lock(&gens_lock);
	if ((h = own_version_handle_locked(ino, false))) {
		*size = handle_size(h);
		*mtime = h->mtime;
	}
	pthread_mutex_unlock(&gens_lock);
	return h != NULL;
}

static void fill_attr(fuse_ino_t ino, const struct node *n, struct stat *st)
{
	int64_t size = 0, mtime = 0;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_nlink = 1;
	st->st_mtime = (time_t)mounted_at;
	switch (n->type) {
	case NODE_ROOT:
	case NODE_CONTROL_DIR:
		st->st_mode = S_IFDIR | (n->type == NODE_ROOT ? 0755 : 0555); /* rm in the root */
		st->st_nlink = n->type == NODE_ROOT ? 3 : 2;
		break;
	case NODE_CONTROL:
		st->st_mode = S_IFREG | (control_is_command(n->ctl) ? 0644 : 0444);
		st->st_mtime = time(NULL);
		break;
	case NODE_DATA:
		if (!dataset_stat(n->ds, n->kind, n->gen, &size, &mtime))
			old_version_attr(ino, &size, &mtime);
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)size;
		st->st_blocks = (blkcnt_t)((size + 511) / 512);
		if (mtime > 0)
			st->st_mtime = (time_t)mtime;
		break;
	}
	st->st_atime = st->st_ctime = st->st_mtime;
}

/* Resolves a name in a directory to its current inode. */
static int lookup_name(fuse_ino_t parent, const char *name, fuse_ino_t *ino, struct node *n)
{
	enum file_kind kind;
	int ds, ctl;

	if (parent == INO_ROOT && strcmp(name, CONTROL_DIR) == 0)
		*ino = INO_CONTROL_DIR;
	else if (parent == INO_ROOT && catalog_lookup_file(name, &ds, &kind) == 0)
		*ino = data_ino(ds, kind, dataset_generation(ds, kind));
	else if (parent == INO_CONTROL_DIR && (ctl = control_lookup(name)) >= 0)
		*ino = INO_CONTROL_BASE + (fuse_ino_t)ctl;
	else
		return -ENOENT;
	return node_of_ino(*ino, n);
}

/* One line a minute at most: a program opening files in a loop must not flood the log. */
static void log_throttled_bound(void)
{
	long now = (long)clock_mono(), last = atomic_load(&bound_logged_at);

	if ((last && now - last < 60) ||
	    !atomic_compare_exchange_strong(&bound_logged_at, &last, now))
		return;
	log_warn("open refused (EMFILE): %ld data handles are open, the bound under the descriptor "
		 "limit (RLIMIT_NOFILE minus %d kept for transfers and the cache)",
		 fdshare_handle_bound(), FDSHARE_RESERVE);
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	struct node n;
	fuse_ino_t ino;

	if (lookup_name(parent, name, &ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = TIMEOUT_S;
	e.entry_timeout = TIMEOUT_S;
	fill_attr(ino, &n, &e.attr);
	fuse_reply_entry(req, &e);
}

static void free_handle(struct handle *h)
{
	if (h->counted)
		atomic_fetch_sub(&data_handles, 1);
	dataset_close(&h->reader);
	free(h->text);
	free(h);
}

/* The open handle fi names, referenced; NULL once released. Drop with put_handle(). */
static struct handle *get_handle(struct fuse_file_info *fi)
{
	struct handle *h;

	pthread_mutex_lock(&gens_lock);
	for (h = open_handles; h && h->id != fi->fh; h = h->next)
		;
	if (h)
		h->refs++;
	pthread_mutex_unlock(&gens_lock);
	return h;
}

static void put_handle(struct handle *h)
{
	int left;

	pthread_mutex_lock(&gens_lock);
	left = --h->refs;
	pthread_mutex_unlock(&gens_lock);
	if (!left)
		free_handle(h);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	struct node n;

	if (node_of_ino(ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	(void)fi; /* the attributes are the inode's, whichever handle asks */
	fill_attr(ino, &n, &st);
	fuse_reply_attr(req, &st, TIMEOUT_S);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct stat st;
	struct node n;

	(void)attr, (void)fi;
	if (node_of_ino(ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	/* The O_TRUNC of a shell's '>' must reach the command: a no-op on command files. */
	if (to_set != FUSE_SET_ATTR_SIZE) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (n.type != NODE_CONTROL || !control_is_command(n.ctl) || may_change(req)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fill_attr(ino, &n, &st);
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
	if (ino != INO_ROOT && ino != INO_CONTROL_DIR) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	if (!(d.buf = malloc(size))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	add_entry(&d, ".", ino, S_IFDIR);
	add_entry(&d, "..", INO_ROOT, S_IFDIR);
	if (ino == INO_CONTROL_DIR) {
		for (int i = 0; i < CTL_COUNT; i++)
			add_entry(&d, control_name((enum control_file)i),
				  INO_CONTROL_BASE + (fuse_ino_t)i, S_IFREG);
	} else {
		add_entry(&d, CONTROL_DIR, INO_CONTROL_DIR, S_IFDIR);
		for (int i = 0; i < CATALOG_COUNT; i++) {
			for (int k = KIND_GZ; k <= KIND_TSV; k++) {
				enum file_kind kind = (enum file_kind)k;
				add_entry(&d, catalog_file(i, kind),
					  data_ino(i, kind, dataset_generation(i, kind)), S_IFREG);
			}
		}
	}
	fuse_reply_buf(req, d.buf, d.len);
	free(d.buf);
}

static void track(struct handle *h)
{
	pthread_mutex_lock(&gens_lock);
	h->id = next_handle_id++;
	h->refs = 1;
	h->next = open_handles;
	open_handles = h;
	pthread_mutex_unlock(&gens_lock);
}

/* Takes h out of the list; its memory goes with the last reference. */
static void untrack(struct handle *h)
{
	pthread_mutex_lock(&gens_lock);
	for (struct handle **p = &open_handles; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			break;
		}
	}
	pthread_mutex_unlock(&gens_lock);
	put_handle(h);
}

/* Handles whose release never came (the kernel drops them at unmount). */
static void free_all_handles(void)
{
	struct handle *h;

	pthread_mutex_lock(&gens_lock);
	while ((h = open_handles)) {
		open_handles = h->next;
		free_handle(h);
	}
	pthread_mutex_unlock(&gens_lock);
}

/*
 * Once the loop has ended (a signal, an unmount), the reads still parked get
 * EIO: each holds a libfuse request that only a reply frees, and its caller
 * waits. Destroy calls it once more after the transfers stopped, a last
 * sweep (nothing can park by then). Answering drops handle references,
 * which takes gens_lock: the feeds are collected first.
 */
static void answer_all_parked(void)
{
	struct feed **feeds = NULL;
	size_t n = 0, cap = 0;
	struct handle *h;

	pthread_mutex_lock(&gens_lock);
	for (h = open_handles; h; h = h->next)
		cap += h->reader.feed != NULL;
	if (cap && !(feeds = calloc(cap, sizeof(*feeds))))
		log_warn("unmount: no memory to answer parked reads");
	for (h = open_handles; feeds && h; h = h->next) {
		if (h->reader.feed) {
			feed_ref(h->reader.feed);
			feeds[n++] = h->reader.feed;
		}
	}
	pthread_mutex_unlock(&gens_lock);
	for (size_t i = 0; i < n; i++) {
		feed_unpark_all(feeds[i], -EIO);
		feed_unref(feeds[i]);
	}
	free(feeds);
}

/*
 * An open through an inode whose version has gone (a name the kernel had not
 * looked up again yet, or /proc/PID/fd): like an unlinked file, it reads that
 * version while a handle still holds it. Else it keeps the current version
 * dataset_open() gave, with direct I/O, which ends where the daemon's data
 * ends and not at the inode's size.
 */
static void open_old_version(struct handle *h, struct fuse_file_info *fi)
{
	struct dataset_reader own = {.fd = -1, .copy = NULL, .feed = NULL, .gen = h->node.gen};
	struct handle *o;

	pthread_mutex_lock(&gens_lock);
	if ((o = own_version_handle_locked(h->ino, false))) {
		/* Its committed copy, or the feed it still reads (opened while arriving). */
		if (o->reader.fd >= 0) {
			own.copy = fdshare_get(o->reader.copy);
			own.fd = o->reader.fd;
		} else {
			own.feed = o->reader.feed;
			feed_ref(own.feed);
		}
		h->size = o->size;
		h->mtime = o->mtime;
	}
	pthread_mutex_unlock(&gens_lock);
	if (!o) {
		fi->direct_io = 1;
		return;
	}
	dataset_close(&h->reader);
	h->reader = own;
	if (own.fd < 0)
		fi->direct_io = 1; /* a feed: no final size to page against */
	else
		fi->keep_cache = 1;
}

/* The rest of an open once dataset_open_start() has opened h->reader. */
static int opened_data(struct handle *h, struct fuse_file_info *fi)
{
	struct stat sb;

	if (h->reader.gen != h->node.gen) {
		open_old_version(h, fi);
		return 0;
	}
	if (h->reader.fd < 0) {
		fi->direct_io = 1; /* still arriving: no final size to page against */
		return 0;
	}
	if (fstat(h->reader.fd, &sb) < 0)
		return -errno;
	h->size = (int64_t)sb.st_size;
	dataset_stat(h->node.ds, h->node.kind, h->node.gen, &(int64_t){0}, &h->mtime);
	fi->keep_cache = 1;
	return 0;
}

/* The one reply to an open: h is tracked and handed to the kernel, or freed (rc). */
static void reply_open(fuse_req_t req, struct handle *h, struct fuse_file_info *fi, int rc)
{
	if (rc) {
		free_handle(h);
		fuse_reply_err(req, -rc);
		return;
	}
	track(h);
	fi->fh = h->id;
	if (fuse_reply_open(req, fi) == -ENOENT)
		untrack(h); /* the opener was interrupted: nobody will release it */
}

/* An open parked until its file's first bytes can be read (see the header). */
struct parked_open {
	struct dataset_opener o; /* ready() gets &p->o */
	fuse_req_t req;
	struct handle *h;
	struct fuse_file_info fi; /* libfuse's lives on ll_open's caller's stack */
};

static void answer_open(struct parked_open *p, int rc)
{
	if (!rc)
		rc = opened_data(p->h, &p->fi);
	reply_open(p->req, p->h, &p->fi, rc);
	free(p);
}

static void open_ready(struct dataset_opener *o, int rc)
{
	struct parked_open *p = (struct parked_open *)o;

	fuse_req_interrupt_func(p->req, NULL, NULL); /* as parked_ready() */
	answer_open(p, rc);
}

static void open_interrupted(fuse_req_t req, void *data)
{
	struct parked_open *p = data;

	(void)req;
	if (dataset_open_cancel(&p->o))
		answer_open(p, -EINTR);
}

/* Opens a data file; replies now, or once the transfer can be read (parked). */
static void open_data(fuse_req_t req, struct handle *h, struct fuse_file_info *fi)
{
	struct parked_open *p;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		reply_open(req, h, fi, -EACCES);
		return;
	}
	/* Counted from here: free_handle() gives the place back. */
	h->counted = true;
	if (atomic_fetch_add(&data_handles, 1) >= fdshare_handle_bound()) {
		log_throttled_bound();
		reply_open(req, h, fi, -EMFILE);
		return;
	}
	if (!(p = malloc(sizeof(*p)))) {
		reply_open(req, h, fi, -ENOMEM);
		return;
	}
	dataset_opener_init(&p->o, h->node.ds, h->node.kind, open_ready);
	p->req = req;
	p->h = h;
	p->fi = *fi;
	fuse_req_interrupt_func(req, open_interrupted, p);
	rc = dataset_open_start(&p->o, &h->reader);
	if (rc == -EINPROGRESS)
		return;
	fuse_req_interrupt_func(req, NULL, NULL);
	answer_open(p, rc);
}

static int open_control(fuse_req_t req, struct handle *h, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;

	if (acc != O_RDONLY && (!control_is_command(h->node.ctl) || may_change(req)))
		return -EACCES;
	fi->direct_io = 1;
	if (acc == O_WRONLY)
		return 0;
	return control_render(h->node.ctl, &h->text, &h->len);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = calloc(1, sizeof(*h));
	int rc;

	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->reader.fd = -1;
	h->ino = ino;
	rc = node_of_ino(ino, &h->node);
	if (!rc && h->node.type == NODE_DATA) {
		open_data(req, h, fi);
		return;
	}
	if (!rc && h->node.type == NODE_CONTROL)
		rc = open_control(req, h, fi);
	else if (!rc)
		rc = -EISDIR;
	reply_open(req, h, fi, rc);
}

static void read_control(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
	size_t n = (size_t)off < h->len ? h->len - (size_t)off : 0;

	if (!h->text) {
		fuse_reply_err(req, EBADF);
		return;
	}
	fuse_reply_buf(req, h->text + off, n < size ? n : size);
}

/* Replies with n bytes of fd at off, moving pages by splice where libfuse can. */
static void reply_from_fd(fuse_req_t req, int fd, size_t n, off_t off)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(n);

	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fd;
	bv.buf[0].pos = off;
	metrics_add(M_READS, 1);
	metrics_add(M_READ_BYTES, (uint64_t)n);
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/* A read parked on its handle's feed until its bytes arrive (see the header). */
struct parked {
	struct feed_waiter w; /* ready() gets &p->w */
	fuse_req_t req;
	struct handle *h; /* a reference, dropped with the reply */
	off_t off;
};

/* Sends the one reply of a parked (or never parked) read and frees it; n as feed_wait()'s. */
static void answer_parked(struct parked *p, int64_t n)
{
	if (n < 0) {
		metrics_add(M_READ_ERRORS, 1);
		fuse_reply_err(p->req, (int)-n);
	} else {
		reply_from_fd(p->req, feed_fd(p->h->reader.feed), (size_t)n, p->off);
	}
	put_handle(p->h);
	free(p);
}

/* A writer took the read off the feed: its bytes are there, or the feed ended. */
static void parked_ready(struct feed_waiter *w, int64_t n)
{
	struct parked *p = (struct parked *)w;

	/* Waits for an interrupt callback running on this request, and stops new ones. */
	fuse_req_interrupt_func(p->req, NULL, NULL);
	answer_parked(p, n);
}

/* libfuse calls this, holding the request's lock, when the kernel interrupts it. */
static void parked_interrupted(fuse_req_t req, void *data)
{
	struct parked *p = data;

	(void)req;
	if (feed_unpark(p->h->reader.feed, &p->w))
		answer_parked(p, -EINTR);
}

static void hold_handle(struct handle *h)
{
	pthread_mutex_lock(&gens_lock);
	h->refs++;
	pthread_mutex_unlock(&gens_lock);
}

static void read_data(fuse_req_t req, struct handle *h, size_t size, off_t off)
{
	struct parked *p;
	int64_t n;

	if (h->reader.fd >= 0) {
		reply_from_fd(req, h->reader.fd, size, off);
		return;
	}
	if (!(p = malloc(sizeof(*p)))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	feed_waiter_init(&p->w, (uint64_t)off, size, parked_ready);
	p->req = req;
	p->off = off;
	p->h = h;
	hold_handle(h);
	/* Before parking, so that no interrupt is lost; until then it only marks p cancelled. */
	fuse_req_interrupt_func(req, parked_interrupted, p);
	n = feed_park(h->reader.feed, &p->w);
	if (n == -EINPROGRESS)
		return; /* the worker goes back to the kernel; a writer or an interrupt answers */
	fuse_req_interrupt_func(req, NULL, NULL);
	answer_parked(p, n);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = get_handle(fi);

	(void)ino;
	if (!h)
		fuse_reply_err(req, EBADF);
	else if (h->node.type == NODE_CONTROL)
		read_control(req, h, size, off);
	else
		read_data(req, h, size, off);
	if (h)
		put_handle(h);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct handle *h = get_handle(fi);
	int rc = -EACCES;

	(void)ino, (void)off;
	if (!h)
		rc = -EBADF;
	else if (h->node.type == NODE_CONTROL && control_is_command(h->node.ctl) &&
		 !may_change(req))
		rc = control_write(h->node.ctl, buf, size);
	if (h)
		put_handle(h);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = get_handle(fi);

	(void)ino;
	if (h) {
		untrack(h);
		put_handle(h);
	}
	fuse_reply_err(req, 0);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node n;
	fuse_ino_t ino;

	if (lookup_name(parent, name, &ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (n.type != NODE_DATA) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (may_change(req)) {
		fuse_reply_err(req, EACCES);
		return;
	}
	dataset_evict(n.ds, n.kind);
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
 * mode check: answer it from the modes shown, with may_change()'s notion of
 * the owner, so that `test -w` tells the truth to other users.
 */
static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	struct node n;
	int allowed;

	if (node_of_ino(ino, &n)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &n, &st);
	if (ctx->uid == 0)
		allowed = R_OK | W_OK | (st.st_mode & 0111 ? X_OK : 0);
	else if (may_change(req) == 0)
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
	answer_all_parked();
	free_all_handles();
	log_info("unmounted");
}

static const struct fuse_lowlevel_ops ops = {
    .init = ll_init,
    .destroy = ll_destroy,
    .lookup = ll_lookup,
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
	mounted_at = clock_wall();
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
	answer_all_parked();
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
