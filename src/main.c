/*
 * main.c - start-up and teardown: subcommands, options, the cache, then the
 * mount. Everything that can be wrong with the configuration is reported
 * here, in one line, before anything is mounted.
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "dataset.h"
#include "fdshare.h"
#include "fs.h"
#include "gunzip.h"
#include "http.h"
#include "log.h"
#include "replicate.h"
#include "secret_env.h"
#include "store.h"
#include "store_azure.h"
#include "version.h"

static const char usage[] =
    "usage: imdbfs [options] [SOURCE] MOUNTPOINT\n"
    "       imdbfs status MOUNTPOINT [--watch]\n"
    "       imdbfs wait MOUNTPOINT [--timeout SECONDS]\n"
    "       imdbfs --help | --version\n"
    "\n"
    "Mounts the IMDb non-commercial datasets as files: NAME.tsv.gz as served by\n"
    "the origin and NAME.tsv decompressed, fetched on demand into a local cache.\n"
    "Unmount with: fusermount3 -u MOUNTPOINT. SOURCE, which mount(8) and fstab pass\n"
    "(mount -t fuse.imdbfs imdbfs MOUNTPOINT), is accepted and ignored.\n"
    "\n"
    "options (-o key=value[,key=value...]; each has an environment variable):\n"
    "    -o origin=URL          IMDBFS_ORIGIN       (https://datasets.imdbws.com/)\n"
    "    -o cache_dir=DIR       IMDBFS_CACHE_DIR, DOWNLOAD_DIR\n"
    "                           ($XDG_CACHE_HOME/imdbfs, else ~/.cache/imdbfs)\n"
    "    -o storage=local|azure IMDBFS_STORAGE, USE_AZURE_BLOB=true  (local)\n"
    "    -o container=NAME      AZURE_CONTAINER_NAME (imdb-datasets)\n"
    "    -o concurrency=N       IMDBFS_CONCURRENCY  (7) downloads at once\n"
    "    -o max_age=SECONDS     IMDBFS_MAX_AGE      (86400) revalidate older copies\n"
    "    -o retries=N           IMDBFS_RETRIES      (4) retries of a transient fault\n"
    "    -o retry_delay=SECONDS IMDBFS_RETRY_DELAY  (1) first backoff, doubling, jittered\n"
    "    -o timeout=SECONDS     IMDBFS_TIMEOUT      (60) a transfer stalled this long is retried\n"
    "    -o refresh_at=HH:MM    IMDBFS_REFRESH_AT   (off) refresh all seven daily at HH:MM UTC\n"
    "    -o refresh_every=SECONDS IMDBFS_REFRESH_EVERY (off) refresh all seven this often\n"
    "    -o decoder=isal|zlib   IMDBFS_DECODER      (isal when built with ISA-L, else zlib)\n"
    "    -o segments=N          IMDBFS_SEGMENTS     (by size: 1 under 64 MiB, then one more\n"
    "                           per 64 MiB up to 4) parallel ranged connections per\n"
    "                           download, 1-16\n"
    "    -o max_size=BYTES      IMDBFS_MAX_SIZE     (16G) the longest download and the largest\n"
    "                           .tsv; longer is refused (suffixes K, M, G, T, P)\n"
    "    -o fast_stat           IMDBFS_FAST_STAT    (off) a .tsv whose size is not known yet\n"
    "                           stats as 0 at once, instead of waiting\n"
    "    -o cafile=PATH         IMDBFS_CAFILE       (system CAs)\n"
    "    -o log_level=LEVEL     LOG_LEVEL           (info) error|warn|info|debug\n"
    "    -f                     stay in the foreground, log to stderr\n"
    "    -d                     foreground with FUSE debug output\n"
    "    -s                     single-threaded\n"
    "    -o allow_other         let other users read the mount\n"
    "\n"
    "storage=azure credentials (environment only): AZURE_STORAGE_CONNECTION_STRING,\n"
    "or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or\n"
    "AZURE_STORAGE_SAS_TOKEN.\n"
    "\n"
    "Command line beats environment beats default.\n";

static const char *env_lookup(const char *name)
{
	return getenv(name);
}

static bool wants(int argc, char *argv[], const char *a, const char *b)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], a) == 0 || strcmp(argv[i], b) == 0)
			return true;
	}
	return false;
}

static int mount_and_serve(struct fuse_args *args, struct config *cfg)
{
	struct store *store = NULL;
	char err[512];
	long nofile;
	int rc, raise_rc;

	/*
	 * A process holding a key must not be dumpable: no core file, and no
	 * ptrace or /proc/PID/mem and environ for other processes of its uid.
	 * fuse_daemonize's fork inherits it. Set before the key is decoded.
	 */
	if ((cfg->storage == STORAGE_AZURE || secret_env_any(env_lookup)) &&
	    prctl(PR_SET_DUMPABLE, 0L, 0L, 0L, 0L) != 0) {
		fprintf(stderr, "imdbfs: cannot make the process non-dumpable: %s\n",
			strerror(errno));
		return 1;
	}
	/* Before any descriptor is opened: readers share descriptors, transfers need their own. */
	raise_rc = fdshare_raise_limit(&nofile);
	if (http_global_init()) {
		fprintf(stderr, "imdbfs: cannot initialise libcurl\n");
		return 1;
	}
	if (cfg->storage == STORAGE_AZURE && store_azure_open(cfg, env_lookup, err, sizeof(err))) {
		fprintf(stderr, "imdbfs: %s\n", err);
		http_global_cleanup();
		return 1;
	}
	if (store_local_open(cfg->cache_dir, &store, err, sizeof(err))) {
		fprintf(stderr, "imdbfs: %s\n", err);
		rc = 1;
		goto out;
	}
	log_init(cfg->log_level, !cfg->foreground);
	if (raise_rc)
		log_warn("cannot raise the open files limit: %s", strerror(-raise_rc));
	log_info("open files limit %ld: at most %ld data handles open at once", nofile,
		 fdshare_handle_bound());
	if (gunzip_select(cfg->decoder)) { /* config_load() checked the name */
		fprintf(stderr, "imdbfs: no decoder %s\n", cfg->decoder);
		rc = 1;
		goto out;
	}
	if ((rc = datasets_init(cfg, store))) {
		fprintf(stderr, "imdbfs: cannot initialise: %s\n", strerror(-rc));
		rc = 1;
		goto out;
	}
	if (store_azure_enabled() && (rc = replicate_init_azure(store))) {
		fprintf(stderr, "imdbfs: cannot initialise: %s\n", strerror(-rc));
		rc = 1;
		goto out;
	}
	control_init(cfg, store, clock_wall());
	/* Read: wiped, so that neither fusermount3 nor /proc/PID/environ shows them. */
	secret_env_scrub();
	/*
	 * libfuse copies each read reply through a fresh page-aligned buffer of
	 * up to 128 KiB; glibc would mmap and munmap every one of them.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	rc = fs_main(args, cfg);
out:
	replicate_stop(); /* joined before the store and the credentials it uses are freed */
	if (store)
		store->ops->destroy(store);
	store_azure_close();
	http_global_cleanup();
	return rc;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct config cfg;
	char err[512];
	int rc;

	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return cli_status(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "wait") == 0)
		return cli_wait(argc - 1, argv + 1);
	if (wants(argc, argv, "--help", "-h")) {
		fputs(usage, stdout);
		return 0;
	}
	if (wants(argc, argv, "--version", "-V")) {
		printf("imdbfs %s (libfuse %d)\n", IMDBFS_VERSION, fuse_version());
		return 0;
	}
	if (config_load(&cfg, &args, env_lookup, err, sizeof(err))) {
		fprintf(stderr, "imdbfs: %s\n", err);
		fuse_opt_free_args(&args);
		return 1;
	}
	config_hide_argv(argc, argv);
	if (fuse_opt_insert_arg(&args, 1, "-ofsname=imdbfs,subtype=imdbfs")) {
		fprintf(stderr, "imdbfs: out of memory\n");
		rc = 1;
	} else {
		rc = mount_and_serve(&args, &cfg);
	}
	config_free(&cfg);
	fuse_opt_free_args(&args);
	return rc;
}
