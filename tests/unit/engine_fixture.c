/* engine_fixture.c - a fake origin and a fake store for the engines' tests; see engine_fixture.h */
#include "engine_fixture.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "config.h"
#include "dataset.h"
#include "download.h"
#include "http.h"
#include "store.h"
#include "tier.h"
#include "unit.h"

#define ORIGIN	   "http://fake-origin.invalid/"
#define PIECE	   (16 * 1024) /* bytes per on_body call */
#define FILES_MAX  (2 * CATALOG_COUNT)
#define WAIT_TRIES 500 /* of 10 ms: 5 s */
#define FX_MTIME   1700000000

/* ---- the fake origin ----------------------------------------------------- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	const unsigned char *body; /* the version served */
	size_t len;
	char etag[64];
	uint64_t drop_at; /* with drops > 0 */
	int drops;
	const unsigned char *next; /* the version after the first drop, or NULL */
	size_t next_len;
	char next_etag[64];
	bool stall_armed;
	uint64_t stall_at;
	bool stalled, released;
	struct fx_request req[FX_REQUESTS_MAX];
	int nreq;
} origin = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

/* At offset off of the file: stalls there if asked to. 0, or -ECANCELED. */
static int maybe_stall(const struct tier_get *g, uint64_t off)
{
	struct timespec ts;
	int rc = 0;

	pthread_mutex_lock(&origin.lock);
	if (origin.stall_armed && origin.stall_at == off) {
		origin.stall_armed = false;
		origin.stalled = true;
		pthread_cond_broadcast(&origin.changed);
		while (!origin.released && !g->cancelled(g->cancel_ctx)) {
			clock_deadline(CLOCK_REALTIME, &ts, 5 * 1000 * 1000);
			pthread_cond_timedwait(&origin.changed, &origin.lock, &ts);
		}
		origin.stalled = false;
		rc = origin.released ? 0 : -ECANCELED;
	}
	pthread_mutex_unlock(&origin.lock);
	return rc;
}

/* The connection drops at off: true (the version may change then). */
static bool drops_at(uint64_t off)
{
	bool drop;

	pthread_mutex_lock(&origin.lock);
	drop = origin.drops > 0 && off == origin.drop_at;
	if (drop) {
		origin.drops--;
		if (origin.next) {
			origin.body = origin.next;
			origin.len = origin.next_len;
			snprintf(origin.etag, sizeof(origin.etag), "%s", origin.next_etag);
			origin.next = NULL;
		}
	}
	pthread_mutex_unlock(&origin.lock);
	return drop;
}

static int fake_get(const struct tier_get *g, const struct http_sink *sink, long *status,
		    double *retry_after, char *err, size_t errlen)
{
	struct http_response rs;
	struct fx_request *r = NULL;
	const unsigned char *body;
	char etag[64];
	uint64_t off = 0, stop;
	size_t len;
	int rc;

	*status = 0;
	*retry_after = 0;
	pthread_mutex_lock(&origin.lock);
	body = origin.body;
	len = origin.len;
	snprintf(etag, sizeof(etag), "%s", origin.etag);
	if (origin.nreq < FX_REQUESTS_MAX) {
		r = &origin.req[origin.nreq++];
		memset(r, 0, sizeof(*r));
		r->from = g->from;
		snprintf(r->if_range, sizeof(r->if_range), "%s", g->if_range ? g->if_range : "");
		snprintf(r->if_none_match, sizeof(r->if_none_match), "%s",
			 g->if_none_match ? g->if_none_match : "");
	}
	pthread_mutex_unlock(&origin.lock);

	memset(&rs, 0, sizeof(rs));
	rs.status = 200;
	snprintf(rs.etag, sizeof(rs.etag), "%s", etag);
	rs.mtime = FX_MTIME;
	rs.total = rs.length = (int64_t)len;
	rs.accept_ranges = true;
	if (g->if_none_match && strcmp(g->if_none_match, etag) == 0) {
		rs.status = 304;
	} else if (g->from > 0 && g->if_range && strcmp(g->if_range, etag) == 0) {
		rs.status = 206; /* the same version: the rest of it */
		rs.range_start = (int64_t)g->from;
		rs.length = (int64_t)(len - g->from);
		off = g->from;
	}
	if ((rc = maybe_stall(g, off)))
		goto failed;
	if (r)
		r->status = rs.status;
	*status = rs.status;
	if (rs.status == 304)
		return 0;
	if ((rc = sink->on_response(sink->ctx, &rs)))
		return rc;
	while (off < len) {
		if (g->cancelled(g->cancel_ctx)) {
			rc = -ECANCELED;
			goto failed;
		}
		if ((rc = maybe_stall(g, off)))
			goto failed;
		if (drops_at(off)) {
			snprintf(err, errlen, "connection reset by the fake origin at byte %llu",
				 (unsigned long long)off);
			return -EAGAIN;
		}
		stop = off + PIECE < len ? off + PIECE : len;
		pthread_mutex_lock(&origin.lock);
		/* Pieces end at the offsets a fault is armed for. */
		if (origin.drops > 0 && origin.drop_at > off && origin.drop_at < stop)
			stop = origin.drop_at;
		if (origin.stall_armed && origin.stall_at > off && origin.stall_at < stop)
			stop = origin.stall_at;
		pthread_mutex_unlock(&origin.lock);
		if ((rc = sink->on_body(sink->ctx, body + off, (size_t)(stop - off))))
			return rc;
		off = stop;
	}
	if ((rc = maybe_stall(g, off))) /* every byte sent, the response not yet complete */
		goto failed;
	return 0;
failed:
	snprintf(err, errlen, "cancelled");
	return rc;
}

static const struct tier fake_origin = {
    .name = "fake origin",
    .bytes = M_ORIGIN_BYTES,
    .splits = false, /* segments talk HTTP themselves */
    .replicated = false,
    .get = fake_get,
};

void fx_origin_serve(const unsigned char *body, size_t len, const char *etag)
{
	pthread_mutex_lock(&origin.lock);
	origin.body = body;
	origin.len = len;
	snprintf(origin.etag, sizeof(origin.etag), "%s", etag);
	pthread_mutex_unlock(&origin.lock);
}

void fx_origin_drop_at(uint64_t at, int times, const unsigned char *next, size_t next_len,
		       const char *next_etag)
{
	pthread_mutex_lock(&origin.lock);
	origin.drop_at = at;
	origin.drops = times;
	origin.next = next;
	origin.next_len = next_len;
	snprintf(origin.next_etag, sizeof(origin.next_etag), "%s", next_etag ? next_etag : "");
	pthread_mutex_unlock(&origin.lock);
}

void fx_origin_stall_at(uint64_t at)
{
	pthread_mutex_lock(&origin.lock);
	origin.stall_armed = true;
	origin.stall_at = at;
	origin.released = false;
	pthread_mutex_unlock(&origin.lock);
}

bool fx_origin_wait_stalled(void)
{
	struct timespec ts;
	bool stalled;

	clock_deadline(CLOCK_REALTIME, &ts, 5ll * 1000 * 1000 * 1000);
	pthread_mutex_lock(&origin.lock);
	while (!origin.stalled &&
	       pthread_cond_timedwait(&origin.changed, &origin.lock, &ts) != ETIMEDOUT)
		;
	stalled = origin.stalled;
	pthread_mutex_unlock(&origin.lock);
	return stalled;
}

void fx_origin_release(void)
{
	pthread_mutex_lock(&origin.lock);
	origin.released = true;
	pthread_cond_broadcast(&origin.changed);
	pthread_mutex_unlock(&origin.lock);
}

int fx_requests(struct fx_request *out)
{
	int n;

	pthread_mutex_lock(&origin.lock);
	n = origin.nreq;
	memcpy(out, origin.req, sizeof(origin.req[0]) * (size_t)n);
	pthread_mutex_unlock(&origin.lock);
	return n;
}

/* ---- the fake store ------------------------------------------------------ */

struct fake_file {
	char name[64];
	int copy; /* the committed copy, -1 none */
	struct meta m;
	int temp; /* the store's own descriptor on the temporary, -1 none */
	struct meta_partial p;
	bool checkpointed;
};

static struct {
	struct store st;
	pthread_mutex_t lock;
	struct fake_file files[FILES_MAX];
	void (*on_commit)(const char *file);
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* file's entry, made when missing; fake.lock held. */
static struct fake_file *file_locked(const char *file)
{
	struct fake_file *free_slot = NULL;

	for (int i = 0; i < FILES_MAX; i++) {
		struct fake_file *f = &fake.files[i];
		if (f->name[0] && strcmp(f->name, file) == 0)
			return f;
		if (!f->name[0] && !free_slot)
			free_slot = f;
	}
	assert_non_null(free_slot);
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", file);
	free_slot->copy = free_slot->temp = -1;
	return free_slot;
}

static void close_temp_locked(struct fake_file *f)
{
	if (f->temp >= 0)
		close(f->temp);
	f->temp = -1;
	f->checkpointed = false;
}

static int fake_lookup(struct store *st, const char *file, struct meta *m)
{
	struct fake_file *f;
	int rc = -ENOENT;

	(void)st;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if (f->copy >= 0) {
		*m = f->m;
		rc = 0;
	}
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static int fake_open(struct store *st, const char *file, int *fd)
{
	struct fake_file *f;
	int rc = -ENOENT;

	(void)st;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if (f->copy >= 0)
		rc = (*fd = dup(f->copy)) < 0 ? -errno : 0;
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static int fake_create_temp(struct store *st, const char *file, int *fd)
{
	struct fake_file *f;
	int rc = 0;

	(void)st;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	close_temp_locked(f);
	if ((f->temp = memfd_create(file, MFD_CLOEXEC)) < 0 || (*fd = dup(f->temp)) < 0) {
		rc = -errno;
		close_temp_locked(f);
	}
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static int fake_checkpoint(struct store *st, const char *file, int fd, const struct meta_partial *p)
{
	struct fake_file *f;
	int rc = -ENOENT;

	(void)st;
	(void)fd;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if (f->temp >= 0) {
		f->p = *p;
		f->checkpointed = true;
		rc = 0;
	}
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static int fake_resume(struct store *st, const char *file, int *fd, struct meta_partial *p,
		       uint64_t *present)
{
	struct fake_file *f;
	struct stat sb;
	int rc = -ENOENT;

	(void)st;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if (f->temp >= 0 && f->checkpointed) {
		rc = (*fd = dup(f->temp)) < 0 || fstat(*fd, &sb) ? -errno : 0;
		*p = f->p;
		*present = (uint64_t)sb.st_size;
	}
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static int fake_commit(struct store *st, const char *file, int fd, const struct meta *m)
{
	struct fake_file *f;
	int copy;

	(void)st;
	if (fake.on_commit)
		fake.on_commit(file);
	if ((copy = dup(fd)) < 0)
		return -errno;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if (f->copy >= 0)
		close(f->copy);
	f->copy = copy;
	f->m = *m;
	close_temp_locked(f);
	pthread_mutex_unlock(&fake.lock);
	return 0;
}

static void fake_discard_temp(struct store *st, const char *file)
{
	(void)st;
	pthread_mutex_lock(&fake.lock);
	close_temp_locked(file_locked(file));
	pthread_mutex_unlock(&fake.lock);
}

static int fake_evict(struct store *st, const char *file)
{
	struct fake_file *f;
	int rc = -ENOENT;

	(void)st;
	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if (f->copy >= 0) {
		close(f->copy);
		f->copy = -1;
		rc = 0;
	}
	pthread_mutex_unlock(&fake.lock);
	return rc;
}

static const char *fake_location(const struct store *st)
{
	(void)st;
	return "fake store";
}

static void fake_destroy(struct store *st)
{
	(void)st;
}

static const struct store_ops fake_ops = {
    .lookup = fake_lookup,
    .open = fake_open,
    .create_temp = fake_create_temp,
    .checkpoint = fake_checkpoint,
    .resume = fake_resume,
    .commit = fake_commit,
    .discard_temp = fake_discard_temp,
    .evict = fake_evict,
    .location = fake_location,
    .destroy = fake_destroy,
};

/* The whole file behind fd; malloc'd. */
static unsigned char *read_all(int fd, size_t *len)
{
	struct stat sb;
	unsigned char *buf;

	assert_int_equal(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size);
	*len = (size_t)sb.st_size;
	return buf;
}

bool fx_store_committed(const char *file, unsigned char **buf, size_t *len, struct meta *m)
{
	struct fake_file *f;
	bool found;

	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if ((found = f->copy >= 0)) {
		*buf = read_all(f->copy, len);
		*m = f->m;
	}
	pthread_mutex_unlock(&fake.lock);
	return found;
}

void fx_assert_committed(const char *file, const unsigned char *want, size_t len, const char *etag,
			 struct meta *m)
{
	unsigned char *got;
	size_t got_len;

	assert_true(fx_store_committed(file, &got, &got_len, m));
	assert_int_equal(got_len, len);
	assert_memory_equal(got, want, len);
	assert_string_equal(m->etag, etag);
	assert_int_equal(m->size, (int64_t)len);
	free(got);
}

bool fx_store_temp(const char *file, unsigned char **buf, size_t *len, struct meta_partial *p)
{
	struct fake_file *f;
	bool found;

	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	if ((found = f->temp >= 0)) {
		if (buf)
			*buf = read_all(f->temp, len);
		*p = f->p;
		if (!f->checkpointed)
			p->durable = -1;
	}
	pthread_mutex_unlock(&fake.lock);
	return found;
}

void fx_store_put_partial(const char *file, const unsigned char *bytes, size_t len,
			  const struct meta_partial *p)
{
	struct fake_file *f;

	pthread_mutex_lock(&fake.lock);
	f = file_locked(file);
	close_temp_locked(f);
	f->temp = memfd_create(file, MFD_CLOEXEC);
	assert_true(f->temp >= 0);
	assert_int_equal(pwrite(f->temp, bytes, len, 0), (ssize_t)len);
	f->p = *p;
	f->checkpointed = true;
	pthread_mutex_unlock(&fake.lock);
}

void fx_store_on_commit(void (*fn)(const char *file))
{
	fake.on_commit = fn;
}

void fx_url_of(const char *file, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s%s", ORIGIN, file);
}

/* ---- set-up ------------------------------------------------------------------ */

static struct config cfg;
static char cache_dir[] = "/tmp/imdbfs-unit-engines-XXXXXX";
static int fds_at_setup;

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

int fx_setup(void **state)
{
	static bool initialised;

	(void)state;
	if (!initialised) {
		assert_non_null(mkdtemp(cache_dir)); /* budget.h measures its free space */
		cfg.origin = cfg.origin_shown = ORIGIN;
		cfg.cache_dir = cache_dir;
		cfg.concurrency = 1;
		cfg.max_age = 86400;
		cfg.retries = 3;
		cfg.retry_delay = 0.001;
		cfg.timeout = 5;
		cfg.decoder = "zlib";
		cfg.refresh_at = -1;
		cfg.segments = 1;
		cfg.max_size = CONFIG_DEFAULT_MAX_SIZE;
		fake.st.ops = &fake_ops;
		assert_int_equal(datasets_init(&cfg, &fake.st), 0);
		download_use_origin(&fake_origin);
		initialised = true;
	}
	pthread_mutex_lock(&origin.lock);
	origin.body = NULL;
	origin.len = 0;
	origin.etag[0] = '\0';
	origin.drops = 0;
	origin.next = NULL;
	origin.stall_armed = origin.stalled = origin.released = false;
	origin.nreq = 0;
	pthread_mutex_unlock(&origin.lock);
	fake.on_commit = NULL;
	fds_at_setup = count_fds();
	return 0;
}

static bool in_flight(int ds)
{
	struct dataset_info info;

	dataset_info(ds, &info);
	return info.state == DS_QUEUED || info.state == DS_DOWNLOADING ||
	       info.state == DS_VERIFYING || info.state == DS_EXTRACTING;
}

int fx_teardown(void **state)
{
	int tries = 0;

	(void)state;
	/* A test that failed may have left a transfer stalled: let it end first. */
	fx_origin_release();
	for (int ds = 0; ds < CATALOG_COUNT; ds++) {
		while (in_flight(ds) && tries++ < WAIT_TRIES)
			usleep(10 * 1000);
		assert_false(in_flight(ds));
		dataset_evict(ds, KIND_GZ);
	}
	tries = 0;
	pthread_mutex_lock(&fake.lock);
	for (int i = 0; i < FILES_MAX; i++) {
		struct fake_file *f = &fake.files[i];
		if (!f->name[0])
			continue;
		close_temp_locked(f);
		if (f->copy >= 0)
			close(f->copy);
		memset(f, 0, sizeof(*f));
	}
	pthread_mutex_unlock(&fake.lock);
	/* A transfer thread drops its last references just after its waiter wakes. */
	while (count_fds() != fds_at_setup && tries++ < WAIT_TRIES)
		usleep(10 * 1000);
	assert_int_equal(count_fds(), fds_at_setup);
	return 0;
}

/* ---- data -------------------------------------------------------------------- */

unsigned char *fx_text(size_t len, unsigned seed)
{
	unsigned char *buf = malloc(len);
	uint32_t x = seed * 2654435761u + 1;

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		/* Mostly digits and letters, a tab or a newline now and then: it compresses like
		 * TSV. */
		unsigned v = (x >> 16) % 40;
		buf[i] = v == 0	  ? '\n'
			 : v < 4  ? '\t'
			 : v < 14 ? (unsigned char)('0' + v - 4)
				  : (unsigned char)('a' + v - 14);
	}
	return buf;
}

unsigned char *fx_gzip(const unsigned char *data, size_t len, int members, size_t *out_len)
{
	size_t cap = len + (size_t)members * 64 + 1024, used = 0;
	unsigned char *out = malloc(cap);

	assert_non_null(out);
	for (int i = 0; i < members; i++) {
		size_t from = len * (size_t)i / (size_t)members;
		size_t to = len * (size_t)(i + 1) / (size_t)members;
		z_stream z;
		memset(&z, 0, sizeof(z));
		assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY),
				 Z_OK);
		z.next_in = (unsigned char *)(uintptr_t)(data + from);
		z.avail_in = (uInt)(to - from);
		z.next_out = out + used;
		z.avail_out = (uInt)(cap - used);
		assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
		used += z.total_out;
		deflateEnd(&z);
	}
	*out_len = used;
	return out;
}

unsigned char *fx_inflate(const unsigned char *gz, size_t len, size_t *out_len)
{
	size_t cap = 4 * len + 4096, used = 0;
	unsigned char *out = malloc(cap);
	z_stream z;
	int rc;

	assert_non_null(out);
	memset(&z, 0, sizeof(z));
	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (unsigned char *)(uintptr_t)gz;
	z.avail_in = (uInt)len;
	for (;;) {
		if (used == cap) {
			cap *= 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
		z.next_out = out + used;
		z.avail_out = (uInt)(cap - used);
		rc = inflate(&z, Z_NO_FLUSH);
		used = cap - z.avail_out;
		if (rc == Z_STREAM_END && z.avail_in == 0)
			break;
		if (rc == Z_STREAM_END) /* the next member */
			assert_int_equal(inflateReset(&z), Z_OK);
		else
			assert_true(rc == Z_OK || rc == Z_BUF_ERROR);
	}
	inflateEnd(&z);
	*out_len = used;
	return out;
}

struct fx_version fx_version_make(size_t plain_len, int members, unsigned seed)
{
	struct fx_version v = {.plain_len = plain_len};

	v.plain = fx_text(plain_len, seed);
	v.gz = fx_gzip(v.plain, plain_len, members, &v.gz_len);
	v.inflated = fx_inflate(v.gz, v.gz_len, &v.inflated_len);
	return v;
}

void fx_version_free(struct fx_version *v)
{
	free(v->plain);
	free(v->gz);
	free(v->inflated);
}

struct dataset_result fx_download(int ds, bool force)
{
	struct dataset_result res;
	struct transfer *t = dataset_download(ds, force);

	assert_non_null(t);
	dataset_wait(t, &res);
	return res;
}

struct dataset_result fx_extract(int ds)
{
	struct dataset_result res;
	struct transfer *t = dataset_extract(ds);

	assert_non_null(t);
	dataset_wait(t, &res);
	return res;
}
