/* fs_inode.c - inode numbers and the inode objects of data file versions; see fs_inode.h */
#include "fs_inode.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "dataset.h"

#define INO_DATA_BASE 64
#define SLOT_BITS     16 /* > 2 * CATALOG_COUNT */
#define SLOTS	      (2 * CATALOG_COUNT)

/* The inode of one version of a data file, alive while the kernel has lookups on it. */
struct inode {
	fuse_ino_t ino;		   /* constant */
	uint64_t nlookup;	   /* guarded by inodes_lock: the kernel's lookups, > 0 */
	struct dataset_version *v; /* constant: a reference */
	struct inode *next;	   /* guarded by inodes_lock: its slot's list */
};

static pthread_mutex_t inodes_lock = PTHREAD_MUTEX_INITIALIZER;
/* guarded by inodes_lock: per data file, the inodes the kernel holds, one per version */
static struct inode *table[SLOTS];
static double mounted; /* set by fs_inode_init() before the mount; read-only afterwards */

void fs_inode_init(double mounted_at)
{
	mounted = mounted_at;
}

static int slot_of(int ds, enum file_kind kind)
{
	return ds * 2 + (int)kind;
}

fuse_ino_t fs_inode_data_ino(int ds, enum file_kind kind, uint64_t gen)
{
	return INO_DATA_BASE + gen * SLOT_BITS + (uint64_t)slot_of(ds, kind);
}

int fs_inode_node(fuse_ino_t ino, struct fs_node *n)
{
	memset(n, 0, sizeof(*n));
	if (ino == FS_INO_ROOT) {
		n->type = NODE_ROOT;
	} else if (ino == FS_INO_CONTROL_DIR) {
		n->type = NODE_CONTROL_DIR;
	} else if (ino >= FS_INO_CONTROL_BASE && ino < FS_INO_CONTROL_BASE + CTL_COUNT) {
		n->type = NODE_CONTROL;
		n->ctl = (enum control_file)(ino - FS_INO_CONTROL_BASE);
	} else if (ino >= INO_DATA_BASE) {
		int slot = (int)((ino - INO_DATA_BASE) % SLOT_BITS);
		if (slot >= SLOTS)
			return -ENOENT;
		n->type = NODE_DATA;
		n->ds = slot / 2;
		n->kind = (enum file_kind)(slot % 2);
	} else {
		return -ENOENT;
	}
	return 0;
}

/* The object of ino in its slot's list; inodes_lock held. */
static struct inode **find_locked(fuse_ino_t ino)
{
	struct inode **p = &table[(ino - INO_DATA_BASE) % SLOT_BITS];

	while (*p && (*p)->ino != ino)
		p = &(*p)->next;
	return p;
}

int fs_inode_lookup(int ds, enum file_kind kind, fuse_ino_t *ino, struct dataset_version **v)
{
	struct inode *fresh = malloc(sizeof(*fresh)), **p;
	int rc;

	if (!fresh)
		return -ENOMEM;
	if ((rc = dataset_current(ds, kind, v))) {
		free(fresh);
		return rc;
	}
	*ino = fs_inode_data_ino(ds, kind, dataset_version_gen(*v));
	pthread_mutex_lock(&inodes_lock);
	if (*(p = find_locked(*ino))) {
		/* One generation is one version object: the inode already holds it. */
		assert((*p)->v == *v);
		assert((*p)->nlookup > 0);
		(*p)->nlookup++;
	} else {
		fresh->ino = *ino;
		fresh->nlookup = 1;
		fresh->v = dataset_version_get(*v);
		fresh->next = NULL;
		*p = fresh;
		fresh = NULL;
	}
	pthread_mutex_unlock(&inodes_lock);
	free(fresh);
	return 0;
}

struct dataset_version *fs_inode_version(fuse_ino_t ino)
{
	struct dataset_version *v = NULL;
	struct inode *i;

	if (ino < INO_DATA_BASE)
		return NULL;
	pthread_mutex_lock(&inodes_lock);
	if ((i = *find_locked(ino)))
		v = dataset_version_get(i->v);
	pthread_mutex_unlock(&inodes_lock);
	return v;
}

void fs_inode_forget(fuse_ino_t ino, uint64_t nlookup)
{
	struct inode **p, *gone = NULL;

	if (ino < INO_DATA_BASE)
		return; /* fixed inodes have no object */
	pthread_mutex_lock(&inodes_lock);
	if (*(p = find_locked(ino))) {
		assert((*p)->nlookup >=
		       nlookup); /* the kernel never forgets more than it looked up */
		if (!((*p)->nlookup -= nlookup)) {
			gone = *p;
			*p = gone->next;
		}
	}
	pthread_mutex_unlock(&inodes_lock);
	if (gone) {
		dataset_version_put(gone->v);
		free(gone);
	}
}

void fs_inode_forget_all(void)
{
	struct inode *gone = NULL, *i;

	pthread_mutex_lock(&inodes_lock);
	for (int s = 0; s < SLOTS; s++) {
		while ((i = table[s])) {
			table[s] = i->next;
			i->next = gone;
			gone = i;
		}
	}
	pthread_mutex_unlock(&inodes_lock);
	while ((i = gone)) {
		gone = i->next;
		dataset_version_put(i->v);
		free(i);
	}
}

void fs_inode_attr(fuse_ino_t ino, const struct fs_node *n, struct dataset_version *v,
		   struct stat *st)
{
	int64_t size = 0, mtime = 0;

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_nlink = 1;
	st->st_mtime = (time_t)mounted;
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
		assert(v);
		dataset_version_stat(v, &size, &mtime);
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)size;
		st->st_blocks = (blkcnt_t)((size + 511) / 512);
		if (mtime > 0)
			st->st_mtime = (time_t)mtime;
		break;
	}
	st->st_atime = st->st_ctime = st->st_mtime;
}

int fs_inode_stat(fuse_ino_t ino, struct stat *st)
{
	struct dataset_version *v = NULL;
	struct fs_node n;

	if (fs_inode_node(ino, &n) || (n.type == NODE_DATA && !(v = fs_inode_version(ino))))
		return -ENOENT;
	fs_inode_attr(ino, &n, v, st);
	dataset_version_put(v);
	return 0;
}
