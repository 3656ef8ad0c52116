/*
 * test_config.c - config_load: command line beats environment beats
 * default, our options leave args and FUSE's stay, and every invalid value
 * fails with -EINVAL and a message naming the option.
 */
#include <errno.h>
#include <fuse_opt.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "unit.h"

struct env_var {
	const char *name;
	const char *value;
};

/* The environment the fake getenv() sees; a NULL-terminated table set by each test. */
static const struct env_var *env_table;

static const char *fake_env(const char *name)
{
	for (const struct env_var *e = env_table; e && e->name; e++) {
		if (strcmp(e->name, name) == 0)
			return e->value;
	}
	return NULL;
}

static const struct env_var home_only[] = {{"HOME", "/home/u"}, {NULL, NULL}};

#define ARGC(argv) ((int)(sizeof(argv) / sizeof((argv)[0])))

/* Runs config_load on argv with env; args is left for the caller to inspect and free. */
static int load(struct config *cfg, struct fuse_args *args, const struct env_var *env, int argc,
		char **argv, char *err, size_t errlen)
{
	struct fuse_args init = FUSE_ARGS_INIT(argc, argv);

	*args = init;
	env_table = env;
	err[0] = '\0';
	return config_load(cfg, args, fake_env, err, errlen);
}

static bool has_arg(const struct fuse_args *args, const char *needle)
{
	for (int i = 0; i < args->argc; i++) {
		if (strstr(args->argv[i], needle))
			return true;
	}
	return false;
}

/* Whether one of the -o groups left in args holds exactly the sub-option opt. */
static bool has_suboption(const struct fuse_args *args, const char *opt)
{
	size_t n = strlen(opt);

	for (int i = 1; i < args->argc; i++) {
		const char *s = args->argv[i];

		if (strcmp(s, "-o") == 0 && i + 1 < args->argc)
			s = args->argv[++i];
		else if (strncmp(s, "-o", 2) == 0)
			s += 2;
		else
			continue;
		for (const char *p = s; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
			if (strncmp(p, opt, n) == 0 && (p[n] == ',' || p[n] == '\0'))
				return true;
		}
	}
	return false;
}

static void test_config_defaults_with_only_home(void **state)
{
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, CONFIG_DEFAULT_ORIGIN);
	assert_string_equal(cfg.origin, "https://datasets.imdbws.com/");
	assert_string_equal(cfg.cache_dir, "/home/u/.cache/imdbfs");
	assert_int_equal(cfg.storage, STORAGE_LOCAL);
	assert_string_equal(cfg.container, "imdb-datasets");
	assert_int_equal(cfg.concurrency, 7);
	assert_int_equal(cfg.max_age, 86400);
	assert_null(cfg.cafile);
	assert_int_equal(cfg.log_level, LOGL_INFO);
	assert_false(cfg.foreground);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void expect_shown(const char *origin, const char *kept, const char *shown)
{
	char opt[256], *argv[] = {"imdbfs", "-o", opt, "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	snprintf(opt, sizeof(opt), "origin=%s", origin);
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, kept); /* the requests still carry it */
	assert_string_equal(cfg.origin_shown, shown);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_origin_credentials_are_redacted_for_display(void **state)
{
	char opt[] = "origin=http://u:pw@bad host/", *argv[] = {"imdbfs", "-o", opt, "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	expect_shown("http://user:s3cret@h:8080/imdb", "http://user:s3cret@h:8080/imdb/",
		     "http://user:***@h:8080/imdb/");
	expect_shown("https://tok3n@h/", "https://tok3n@h/", "https://***@h/");
	expect_shown("https://:pw@h/", "https://:pw@h/", "https://:***@h/");
	expect_shown("http://h/a/", "http://h/a/", "http://h/a/"); /* as written */
	/* Nor does the error line of a refused one show it. */
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), -EINVAL);
	assert_null(strstr(err, "pw"));
	assert_non_null(strstr(err, "origin"));
	fuse_opt_free_args(&args);
}

static void test_config_hide_argv_overwrites_url_passwords(void **state)
{
	char a1[] = "-o", a2[] = "cache_dir=/c,origin=http://user:s3cret@h:1/x@y,log_level=debug";
	char a3[] = "-oorigin=https://tok3n@h/", a4[] = "/mnt/a@b:c", a5[] = "http://h/p@q";
	char *argv[] = {"imdbfs", a1, a2, a3, a4, a5};

	(void)state;
	config_hide_argv(ARGC(argv), argv);
	assert_string_equal(a2, "cache_dir=/c,origin=http://user:******@h:1/x@y,log_level=debug");
	assert_string_equal(a3, "-oorigin=https://*****@h/");
	assert_string_equal(a4, "/mnt/a@b:c");	 /* not a URL */
	assert_string_equal(a5, "http://h/p@q"); /* an @ in the path */
}

static void test_config_our_options_leave_args_mountpoint_stays(void **state)
{
	char *argv[] = {"imdbfs", "-o", "origin=http://a/,concurrency=3", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, "http://a/");
	assert_int_equal(cfg.concurrency, 3);
	assert_int_equal(args.argc, 2);
	assert_string_equal(args.argv[0], "imdbfs");
	assert_string_equal(args.argv[1], "/mnt");
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_fuse_options_stay_in_args(void **state)
{
	char *argv[] = {"imdbfs",   "-o", "origin=http://a/,allow_other,concurrency=3,ro",
			"-f",	    "-o", "max_age=60,log_level=debug,default_permissions",
			"/mnt/imdb"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_true(cfg.foreground);
	assert_int_equal(cfg.max_age, 60);
	assert_int_equal(cfg.log_level, LOGL_DEBUG);
	assert_true(has_suboption(&args, "allow_other"));
	assert_true(has_suboption(&args, "ro"));
	assert_true(has_suboption(&args, "default_permissions"));
	assert_false(has_suboption(&args, "concurrency=3"));
	assert_true(has_arg(&args, "-f"));
	assert_string_equal(args.argv[args.argc - 1], "/mnt/imdb");
	assert_false(has_arg(&args, "origin="));
	assert_false(has_arg(&args, "concurrency="));
	assert_false(has_arg(&args, "max_age="));
	assert_false(has_arg(&args, "log_level="));
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_command_line_beats_env_beats_default(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"},
	    {"IMDBFS_ORIGIN", "http://env/"},
	    {"IMDBFS_CONCURRENCY", "5"},
	    {"IMDBFS_MAX_AGE", "60"},
	    {"LOG_LEVEL", "warn"},
	    {"IMDBFS_CAFILE", "/etc/env-ca.pem"},
	    {NULL, NULL},
	};
	char *argv[] = {"imdbfs", "-o", "origin=http://cli/,concurrency=3", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, "http://cli/"); /* command line */
	assert_int_equal(cfg.concurrency, 3);		/* command line */
	assert_int_equal(cfg.max_age, 60);		/* environment */
	assert_int_equal(cfg.log_level, LOGL_WARN);	/* environment */
	assert_string_equal(cfg.cafile, "/etc/env-ca.pem");
	assert_string_equal(cfg.container, "imdb-datasets"); /* default */
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

/* -o fast_stat is a flag (or =1/=0), IMDBFS_FAST_STAT stands in for it, and it is off by default.
 */
static void test_config_fast_stat_flag_env_and_default(void **state)
{
	static const struct env_var env_on[] = {
	    {"HOME", "/home/u"}, {"IMDBFS_FAST_STAT", "true"}, {NULL, NULL}};
	char *flag[] = {"imdbfs", "-o", "fast_stat,max_age=5", "/mnt"};
	char *off[] = {"imdbfs", "-o", "fast_stat=0", "/mnt"};
	char *none[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(none), none, err, sizeof(err)), 0);
	assert_false(cfg.fast_stat);
	config_free(&cfg);
	fuse_opt_free_args(&args);
	assert_int_equal(load(&cfg, &args, home_only, ARGC(flag), flag, err, sizeof(err)), 0);
	assert_true(cfg.fast_stat);
	assert_int_equal(cfg.max_age, 5);
	assert_false(has_suboption(&args, "fast_stat")); /* ours: FUSE never sees it */
	config_free(&cfg);
	fuse_opt_free_args(&args);
	assert_int_equal(load(&cfg, &args, env_on, ARGC(none), none, err, sizeof(err)), 0);
	assert_true(cfg.fast_stat);
	config_free(&cfg);
	fuse_opt_free_args(&args);
	assert_int_equal(load(&cfg, &args, env_on, ARGC(off), off, err, sizeof(err)), 0);
	assert_false(cfg.fast_stat); /* command line beats environment */
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_env_used_when_no_option(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"},
	    {"IMDBFS_ORIGIN", "https://mirror.example/imdb"},
	    {"AZURE_CONTAINER_NAME", "my-container"},
	    {"IMDBFS_STORAGE", "azure"},
	    {NULL, NULL},
	};
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, "https://mirror.example/imdb/");
	assert_string_equal(cfg.container, "my-container");
	assert_int_equal(cfg.storage, STORAGE_AZURE);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_download_dir_when_cache_dir_env_unset(void **state)
{
	static const struct env_var env[] = {{"HOME", "/home/u"},
					     {"XDG_CACHE_HOME", "/xdg"},
					     {"DOWNLOAD_DIR", "/data/dl"},
					     {NULL, NULL}};
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.cache_dir, "/data/dl");
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_imdbfs_cache_dir_beats_download_dir(void **state)
{
	static const struct env_var env[] = {{"HOME", "/home/u"},
					     {"DOWNLOAD_DIR", "/data/dl"},
					     {"IMDBFS_CACHE_DIR", "/data/imdbfs"},
					     {NULL, NULL}};
	char *argv[] = {"imdbfs", "/mnt"};
	char *argv_cli[] = {"imdbfs", "-o", "cache_dir=/cli/cache", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.cache_dir, "/data/imdbfs");
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, env, ARGC(argv_cli), argv_cli, err, sizeof(err)), 0);
	assert_string_equal(cfg.cache_dir, "/cli/cache");
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_xdg_cache_home_beats_home(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"XDG_CACHE_HOME", "/xdg"}, {NULL, NULL}};
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.cache_dir, "/xdg/imdbfs");
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_no_home_no_cache_dir_fails(void **state)
{
	static const struct env_var env[] = {{NULL, NULL}};
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cache_dir"));
	assert_null(cfg.origin);
	fuse_opt_free_args(&args);
}

static void test_config_use_azure_blob_true_selects_azure(void **state)
{
	static const struct env_var yes[] = {
	    {"HOME", "/home/u"}, {"USE_AZURE_BLOB", "true"}, {NULL, NULL}};
	static const struct env_var no[] = {
	    {"HOME", "/home/u"}, {"USE_AZURE_BLOB", "false"}, {NULL, NULL}};
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, yes, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.storage, STORAGE_AZURE);
	assert_string_equal(config_storage_name(cfg.storage), "azure");
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, no, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.storage, STORAGE_LOCAL);
	assert_string_equal(config_storage_name(cfg.storage), "local");
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_storage_option_beats_use_azure_blob(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"USE_AZURE_BLOB", "true"}, {NULL, NULL}};
	char *argv[] = {"imdbfs", "-o", "storage=local", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.storage, STORAGE_LOCAL);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_origin_gets_trailing_slash(void **state)
{
	char *argv[] = {"imdbfs", "-o", "origin=http://a", "/mnt"};
	char *argv_path[] = {"imdbfs", "-o", "origin=https://host:8443/imdb/data", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, "http://a/");
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv_path), argv_path, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.origin, "https://host:8443/imdb/data/");
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_number_bounds_accepted(void **state)
{
	char *low[] = {"imdbfs", "-o", "concurrency=1,max_age=0", "/mnt"};
	char *high[] = {"imdbfs", "-o", "concurrency=64", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(low), low, err, sizeof(err)), 0);
	assert_int_equal(cfg.concurrency, 1);
	assert_int_equal(cfg.max_age, 0);
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, home_only, ARGC(high), high, err, sizeof(err)), 0);
	assert_int_equal(cfg.concurrency, 64);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_each_invalid_option_fails_naming_it(void **state)
{
	static const struct {
		const char *opt;
		const char *name;
	} bad[] = {
	    {"origin=notaurl", "origin"},
	    {"origin=ftp://x", "origin"},
	    {"origin=http://", "origin"},
	    {"concurrency=0", "concurrency"},
	    {"concurrency=65", "concurrency"},
	    {"concurrency=abc", "concurrency"},
	    {"concurrency=3x", "concurrency"},
	    {"max_age=-1", "max_age"},
	    {"max_age=soon", "max_age"},
	    {"storage=floppy", "storage"},
	    {"log_level=loud", "log_level"},
	    {"container=Bad_Name", "container"},
	    {"container=ab", "container"},
	    {"container=-imdb", "container"},
	    {"refresh_at=24:00", "refresh_at"},
	    {"refresh_at=7:30", "refresh_at"},
	    {"refresh_at=07:60", "refresh_at"},
	    {"refresh_at=07:30:00", "refresh_at"},
	    {"refresh_at=0a:30", "refresh_at"},
	    {"refresh_every=0", "refresh_every"},
	    {"refresh_every=-5", "refresh_every"},
	    {"refresh_every=1h", "refresh_every"},
	    {"segments=0", "segments"},
	    {"segments=17", "segments"},
	    {"segments=four", "segments"},
	    {"max_size=0", "max_size"},
	    {"max_size=-1", "max_size"},
	    {"max_size=16X", "max_size"},
	    {"max_size=16GB", "max_size"},
	    {"max_size=2048P", "max_size"},
	    {"max_size=", "max_size"},
	    {"fast_stat=maybe", "fast_stat"},
	    {"fast_stat=", "fast_stat"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = {"imdbfs", "-o", (char *)bad[i].opt, "/mnt"};
		struct fuse_args args;
		struct config cfg;
		char err[256];
		int rc = load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err));

		fuse_opt_free_args(&args);
		if (rc == 0)
			config_free(&cfg);
		if (rc != -EINVAL || !strstr(err, bad[i].name))
			fail_msg("%s: rc %d, message '%s'", bad[i].opt, rc, err);
		if (cfg.origin || cfg.cache_dir || cfg.container || cfg.cafile)
			fail_msg("%s: config not freed after failure", bad[i].opt);
	}
}

static void test_config_invalid_env_value_fails_too(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"IMDBFS_CONCURRENCY", "0"}, {NULL, NULL}};
	char *argv[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "concurrency"));
	fuse_opt_free_args(&args);
}

/*
 * The refusal stays one line whatever the value holds: control characters
 * in it are shown as '?'. Found by fuzz_config ("-oorigin=\r").
 */
static void test_config_refusal_is_one_line(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"IMDBFS_ORIGIN", "http://h/\r\x1b[2K"}, {NULL, NULL}};
	char *argv[] = {"imdbfs", "-o", "storage=a\nb", "/mnt"};
	char *plain[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(argv), argv, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "storage 'a?b'"));
	fuse_opt_free_args(&args);
	assert_int_equal(load(&cfg, &args, env, ARGC(plain), plain, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "origin"));
	for (const char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			fail_msg("control character 0x%02x in '%s'", *p, err);
	fuse_opt_free_args(&args);
}

static void test_config_valid_option_overrides_invalid_env(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"LOG_LEVEL", "loud"}, {NULL, NULL}};
	char *argv[] = {"imdbfs", "-o", "log_level=error", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.log_level, LOGL_ERROR);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

static void test_config_refresh_off_by_default_and_parsed(void **state)
{
	char *argv[] = {"imdbfs", "-o", "refresh_at=23:59", "/mnt"};
	char *none[] = {"imdbfs", "/mnt"};
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"IMDBFS_REFRESH_EVERY", "3600"}, {NULL, NULL}};
	struct fuse_args args;
	struct config cfg;
	char err[256], hhmm[16];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(none), none, err, sizeof(err)), 0);
	assert_int_equal(cfg.refresh_at, -1);
	assert_int_equal(cfg.refresh_every, 0);
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.refresh_at, 23 * 60 + 59);
	assert_string_equal(config_hhmm(cfg.refresh_at, hhmm), "23:59");
	assert_int_equal(cfg.refresh_every, 3600);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

/* segments: by size unless given; the option beats IMDBFS_SEGMENTS. */
static void test_config_segments_by_size_or_as_given(void **state)
{
	char *none[] = {"imdbfs", "/mnt"};
	char *argv[] = {"imdbfs", "-o", "segments=16", "/mnt"};
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"IMDBFS_SEGMENTS", "2"}, {NULL, NULL}};
	const uint64_t mib = 1 << 20;
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(none), none, err, sizeof(err)), 0);
	assert_int_equal(cfg.segments, 0);
	assert_int_equal(config_segments_for(&cfg, 10 * mib), 1);
	assert_int_equal(config_segments_for(&cfg, 64 * mib - 1), 1);
	assert_int_equal(config_segments_for(&cfg, 64 * mib), 2);
	assert_int_equal(config_segments_for(&cfg, 150 * mib), 3);
	assert_int_equal(config_segments_for(&cfg, 10000 * mib), 4);
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, env, ARGC(none), none, err, sizeof(err)), 0);
	assert_int_equal(config_segments_for(&cfg, 1), 2);
	config_free(&cfg);
	fuse_opt_free_args(&args);
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_int_equal(cfg.segments, 16);
	config_free(&cfg);
	fuse_opt_free_args(&args);
}

/* mount.fuse3 runs "imdbfs SOURCE MOUNTPOINT -o ...": the source goes, the mountpoint stays. */
static void test_config_source_before_mountpoint_is_dropped(void **state)
{
	char *two[] = {"imdbfs", "imdbfs", "/mnt", "-o", "rw,origin=http://a/"};
	char *three[] = {"imdbfs", "src", "/mnt", "/other"};
	struct fuse_args args;
	struct config cfg;
	char err[256];

	(void)state;
	assert_int_equal(load(&cfg, &args, home_only, ARGC(two), two, err, sizeof(err)), 0);
	assert_string_equal(cfg.origin, "http://a/");
	assert_true(has_arg(&args, "/mnt"));
	for (int i = 1; i < args.argc; i++)
		assert_string_not_equal(args.argv[i], "imdbfs");
	config_free(&cfg);
	fuse_opt_free_args(&args);

	assert_int_equal(load(&cfg, &args, home_only, ARGC(three), three, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "too many arguments"));
	fuse_opt_free_args(&args);
}

/* max_size: 16 GiB unless given, suffixes in powers of 1024, the option beats IMDBFS_MAX_SIZE. */
static void test_config_max_size_default_suffixes_and_env(void **state)
{
	static const struct env_var env[] = {
	    {"HOME", "/home/u"}, {"IMDBFS_MAX_SIZE", "2g"}, {NULL, NULL}};
	static const struct {
		const char *s;
		uint64_t v;
	} good[] = {
	    {"1", 1},
	    {"4096", 4096},
	    {"64k", 64u << 10},
	    {"4M", 4u << 20},
	    {"16G", 16ull << 30},
	    {"3t", 3ull << 40},
	    {"1024P", 1ull << 60},
	    {"1152921504606846976", 1ull << 60},
	};
	char *argv[] = {"imdbfs", "-o", "max_size=100M", "/mnt"};
	char *bare[] = {"imdbfs", "/mnt"};
	struct fuse_args args;
	struct config cfg;
	char err[256];
	uint64_t v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (config_parse_size(good[i].s, &v) || v != good[i].v)
			fail_msg("max_size=%s not parsed as %llu", good[i].s,
				 (unsigned long long)good[i].v);
	}
	assert_int_equal(config_parse_size("1152921504606846977", &v), -EINVAL);
	assert_int_equal(config_parse_size("18446744073709551616", &v), -EINVAL);
	assert_int_equal(config_parse_size(" 1", &v), -EINVAL);
	assert_int_equal(load(&cfg, &args, home_only, ARGC(bare), bare, err, sizeof(err)), 0);
	assert_true(cfg.max_size == CONFIG_DEFAULT_MAX_SIZE);
	assert_true(CONFIG_DEFAULT_MAX_SIZE == 16ull << 30);
	fuse_opt_free_args(&args);
	config_free(&cfg);
	assert_int_equal(load(&cfg, &args, env, ARGC(bare), bare, err, sizeof(err)), 0);
	assert_true(cfg.max_size == 2ull << 30);
	fuse_opt_free_args(&args);
	config_free(&cfg);
	assert_int_equal(load(&cfg, &args, env, ARGC(argv), argv, err, sizeof(err)), 0);
	assert_true(cfg.max_size == 100ull << 20);
	fuse_opt_free_args(&args);
	config_free(&cfg);
}

int test_config_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_defaults_with_only_home),
	    cmocka_unit_test(test_config_our_options_leave_args_mountpoint_stays),
	    cmocka_unit_test(test_config_origin_credentials_are_redacted_for_display),
	    cmocka_unit_test(test_config_hide_argv_overwrites_url_passwords),
	    cmocka_unit_test(test_config_fuse_options_stay_in_args),
	    cmocka_unit_test(test_config_command_line_beats_env_beats_default),
	    cmocka_unit_test(test_config_env_used_when_no_option),
	    cmocka_unit_test(test_config_fast_stat_flag_env_and_default),
	    cmocka_unit_test(test_config_download_dir_when_cache_dir_env_unset),
	    cmocka_unit_test(test_config_imdbfs_cache_dir_beats_download_dir),
	    cmocka_unit_test(test_config_xdg_cache_home_beats_home),
	    cmocka_unit_test(test_config_no_home_no_cache_dir_fails),
	    cmocka_unit_test(test_config_use_azure_blob_true_selects_azure),
	    cmocka_unit_test(test_config_storage_option_beats_use_azure_blob),
	    cmocka_unit_test(test_config_origin_gets_trailing_slash),
	    cmocka_unit_test(test_config_number_bounds_accepted),
	    cmocka_unit_test(test_config_each_invalid_option_fails_naming_it),
	    cmocka_unit_test(test_config_invalid_env_value_fails_too),
	    cmocka_unit_test(test_config_valid_option_overrides_invalid_env),
	    cmocka_unit_test(test_config_refusal_is_one_line),
	    cmocka_unit_test(test_config_refresh_off_by_default_and_parsed),
	    cmocka_unit_test(test_config_source_before_mountpoint_is_dropped),
	    cmocka_unit_test(test_config_segments_by_size_or_as_given),
	    cmocka_unit_test(test_config_max_size_default_suffixes_and_env),
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
