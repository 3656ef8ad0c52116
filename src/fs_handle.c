/*
 * fs_handle.c - open files: the handles the kernel holds as fh, the opens
 * and reads of data and control files, and the requests parked on them. See
 * fs_handle.h.
 *
 * Handles: the kernel may process a release while a read of the same file
 * is still being served (parallel direct I/O requests), so fh is an id that
 * requests look up and reference under handles_lock; the memory goes when
 * the last reference does. A data handle holds a reader (dataset.h): a
 * reference on the version it reads and on that version's descriptor or
 * feed, so that it reads that version to its end whatever the inode table or
 * the dataset do meanwhile.
 *
 * Which version an open reads: the version of the inode it comes through
 * (fs_inode_version()). Through the current version's inode it is the
 * current version (dataset_open_start() may start its transfer and park);
 * through an older inode (a name the kernel had not looked up again yet,
 * /proc/PID/fd, a held O_PATH) it is that inode's own version, committed copy
 * or feed, like an unlinked file. Only an older inode whose version went
 * before any of it arrived has nothing to read: it reads the current version,
 * with direct I/O, which ends where the daemon's data ends and not at the
 * inode's size. A committed copy opened through its own inode is read
 * through the page cache (keep_cache) of that inode; a feed with direct I/O.
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
 *     returns true; at the end of the session loop fs_handle_answer_parked()
 *     and datasets_cancel_opens() reply EIO to whatever is left, before the
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
 * Locking: handles_lock guards the list of open handles, their reference
 * counts and next_handle_id. A parked read is on its feed's list, guarded by
 * that feed's lock (a leaf); a parked open is on its dataset's list, guarded
 * by the dataset lock. Lock order: libfuse's per-request lock (held around
 * the interrupt callback) before the feed or dataset lock; nothing replies
 * or calls fuse_req_interrupt_func() holding a feed or dataset lock, and
 * handles_lock is never held while answering (answering drops a handle
 * reference, which takes it), nor together with a dataset lock.
 *
 * Descriptors (fdshare.h): handles on a committed copy share its version's
 * descriptor; at most fdshare_handle_bound() data handles exist at once
 * (data_handles), an open beyond fails with EMFILE.
 */
#include "fs_handle.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "control.h"
#include "dataset.h"
#include "fdshare.h"
#include "feed.h"
#include "fs_inode.h"
#include "log.h"
#include "metrics.h"

/* An open file. Control files hold the text rendered at open (procfs-like). */
struct handle {
	uint64_t id; /* what the kernel holds as fh */
	int refs;    /* guarded by handles_lock: the open file, and each request using it */
	struct fs_node node;
	struct dataset_reader reader; /* NODE_DATA */
	struct dataset_version *via;  /* NODE_DATA: the version of the inode opened, a reference */
	struct handle *next;	      /* guarded by handles_lock: open_handles */
	char *text;		      /* NODE_CONTROL opened for reading */
	size_t len;
	bool counted; /* in data_handles */
};

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *open_handles; /* guarded by handles_lock: every open handle */
static uint64_t next_handle_id = 1; /* guarded by handles_lock */
/* Data handles in memory, opens included, bounded by fdshare_handle_bound(). */
static atomic_long data_handles;
static atomic_long bound_logged_at; /* seconds of the monotonic clock */

int fs_may_change(fuse_req_t req)
{
	uid_t uid = fuse_req_ctx(req)->uid;

	return uid == 0 || uid == getuid() ? 0 : -EACCES;
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

static void free_handle(struct handle *h)
{
	if (h->counted)
		atomic_fetch_sub(&data_handles, 1);
	dataset_close(&h->reader);
	dataset_version_put(h->via);
	free(h->text);
	free(h);
}

/* The open handle fi names, referenced; NULL once released. Drop with put_handle(). */
static struct handle *get_handle(struct fuse_file_info *fi)
{
	struct handle *h;

	pthread_mutex_lock(&handles_lock);
	for (h = open_handles; h && h->id != fi->fh; h = h->next)
		;
	if (h) {
		assert(h->refs > 0); /* a handle with none is off the list */
		h->refs++;
	}
	pthread_mutex_unlock(&handles_lock);
	return h;
}

static void put_handle(struct handle *h)
{
	int left;

	pthread_mutex_lock(&handles_lock);
	assert(h->refs > 0);
	left = --h->refs;
	pthread_mutex_unlock(&handles_lock);
	if (!left)
		free_handle(h);
}

static void track(struct handle *h)
{
	pthread_mutex_lock(&handles_lock);
	h->id = next_handle_id++;
	h->refs = 1;
	h->next = open_handles;
	open_handles = h;
	pthread_mutex_unlock(&handles_lock);
}

/* Takes h out of the list; its memory goes with the last reference. */
static void untrack(struct handle *h)
{
	pthread_mutex_lock(&handles_lock);
	for (struct handle **p = &open_handles; *p; p = &(*p)->next) {
		if (*p == h) {
			*p = h->next;
			break;
		}
	}
	pthread_mutex_unlock(&handles_lock);
	put_handle(h);
}

void fs_handle_free_all(void)
{
	struct handle *h;

	pthread_mutex_lock(&handles_lock);
	while ((h = open_handles)) {
		open_handles = h->next;
		free_handle(h);
	}
	pthread_mutex_unlock(&handles_lock);
}

/*
 * Once the loop has ended (a signal, an unmount), the reads still parked get
 * EIO: each holds a libfuse request that only a reply frees, and its caller
 * waits. Destroy calls it once more after the transfers stopped, a last
 * sweep (nothing can park by then). Answering drops handle references,
 * which takes handles_lock: the feeds are collected first.
 */
void fs_handle_answer_parked(void)
{
	struct feed **feeds = NULL;
	size_t n = 0, cap = 0;
	struct handle *h;

	pthread_mutex_lock(&handles_lock);
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
	pthread_mutex_unlock(&handles_lock);
	for (size_t i = 0; i < n; i++) {
		feed_unpark_all(feeds[i], -EIO);
		feed_unref(feeds[i]);
	}
	free(feeds);
}

/* The rest of an open once dataset_open_start() has opened h->reader (see the header). */
static int opened_data(struct handle *h, struct fuse_file_info *fi)
{
	if (h->reader.v != h->via || h->reader.fd < 0)
		fi->direct_io = 1; /* a feed, or not the inode's version: no size to page against */
	else
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
	rc = dataset_open_start(&p->o, h->via, &h->reader);
	if (rc == -EINPROGRESS)
		return;
	fuse_req_interrupt_func(req, NULL, NULL);
	answer_open(p, rc);
}

static int open_control(fuse_req_t req, struct handle *h, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;

	if (acc != O_RDONLY && (!control_is_command(h->node.ctl) || fs_may_change(req)))
		return -EACCES;
	fi->direct_io = 1;
	if (acc == O_WRONLY)
		return 0;
	return control_render(h->node.ctl, &h->text, &h->len);
}

void fs_handle_open(fuse_req_t req, fuse_ino_t ino, const struct fs_node *n,
		    struct fuse_file_info *fi)
{
	struct handle *h = calloc(1, sizeof(*h));
	int rc = 0;

	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->reader.fd = -1;
	h->node = *n;
	if (n->type == NODE_DATA) {
		if (!(h->via = fs_inode_version(ino))) {
			reply_open(req, h, fi, -ESTALE); /* an inode the kernel never looked up */
			return;
		}
		open_data(req, h, fi);
		return;
	}
	if (n->type == NODE_CONTROL)
		rc = open_control(req, h, fi);
	else
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
	pthread_mutex_lock(&handles_lock);
	h->refs++;
	pthread_mutex_unlock(&handles_lock);
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

void fs_handle_read(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = get_handle(fi);

	if (!h)
		fuse_reply_err(req, EBADF);
	else if (h->node.type == NODE_CONTROL)
		read_control(req, h, size, off);
	else
		read_data(req, h, size, off);
	if (h)
		put_handle(h);
}

int fs_handle_write(fuse_req_t req, const char *buf, size_t size, struct fuse_file_info *fi)
{
	struct handle *h = get_handle(fi);
	int rc = -EACCES;

	if (!h)
		rc = -EBADF;
	else if (h->node.type == NODE_CONTROL && control_is_command(h->node.ctl) &&
		 !fs_may_change(req))
		rc = control_write(h->node.ctl, buf, size);
	if (h)
		put_handle(h);
	return rc;
}

void fs_handle_release(struct fuse_file_info *fi)
{
	struct handle *h = get_handle(fi);

	if (h) {
		untrack(h);
		put_handle(h);
	}
}
