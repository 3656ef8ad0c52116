/*
 * test_control_parse.c - the one-line commands written to .control/
 * download, extract, full-process and delete: dataset masks, 'force', and
 * refusal of anything malformed with -EINVAL and a reason.
 */
#include <errno.h>
#include <string.h>

#include "control.h"
#include "unit.h"

/* Bit i is dataset i in catalogue order. */
#define NAME_BASICS	 (1u << 0)
#define TITLE_AKAS	 (1u << 1)
#define TITLE_BASICS	 (1u << 2)
#define TITLE_CREW	 (1u << 3)
#define TITLE_EPISODE	 (1u << 4)
#define TITLE_PRINCIPALS (1u << 5)
#define TITLE_RATINGS	 (1u << 6)
#define ALL		 0x7fu

/* Parses a C string (its length excludes the NUL) for cmd and expects success. */
static struct command parsed(enum job_command cmd, const char *text)
{
	struct command c;
	char err[256] = "";
	int rc = control_parse_command(cmd, text, strlen(text), &c, err, sizeof(err));

	if (rc != 0)
		fail_msg("'%s' refused (%d): %s", text, rc, err);
	assert_int_equal(c.cmd, cmd);
	return c;
}

/* Expects buf (len bytes) to be refused for cmd with -EINVAL and a reason. */
static void refused(enum job_command cmd, const char *buf, size_t len)
{
	struct command c;
	char err[256] = "";
	int rc = control_parse_command(cmd, buf, len, &c, err, sizeof(err));

	if (rc != -EINVAL)
		fail_msg("'%.*s' for %s: rc %d, want -EINVAL", (int)(len < 60 ? len : 60), buf,
			 job_command_name(cmd), rc);
	if (err[0] == '\0')
		fail_msg("'%.*s' refused without a reason", (int)(len < 60 ? len : 60), buf);
}

static void refused_str(enum job_command cmd, const char *text)
{
	refused(cmd, text, strlen(text));
}

static void test_parse_all_with_and_without_newline(void **state)
{
	struct command c;

	(void)state;
	c = parsed(CMD_DOWNLOAD, "all\n");
	assert_int_equal(c.mask, ALL);
	assert_false(c.force);
	c = parsed(CMD_DOWNLOAD, "all");
	assert_int_equal(c.mask, ALL);
	assert_false(c.force);
	c = parsed(CMD_DELETE, "all\n");
	assert_int_equal(c.mask, ALL);
}

static void test_parse_dataset_name_and_gz_file_name(void **state)
{
	(void)state;
	assert_int_equal(parsed(CMD_DOWNLOAD, "title.basics").mask, TITLE_BASICS);
	assert_int_equal(parsed(CMD_DOWNLOAD, "title.basics.tsv.gz").mask, TITLE_BASICS);
	assert_int_equal(parsed(CMD_EXTRACT, "title.basics\n").mask, TITLE_BASICS);
}

static void test_parse_each_dataset_sets_its_own_bit(void **state)
{
	static const struct {
		const char *word;
		unsigned bit;
	} each[] = {
	    {"name.basics", NAME_BASICS},     {"title.akas", TITLE_AKAS},
	    {"title.basics", TITLE_BASICS},   {"title.crew", TITLE_CREW},
	    {"title.episode", TITLE_EPISODE}, {"title.principals", TITLE_PRINCIPALS},
	    {"title.ratings", TITLE_RATINGS},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(each) / sizeof(each[0]); i++)
		assert_int_equal(parsed(CMD_DOWNLOAD, each[i].word).mask, each[i].bit);
}

static void test_parse_comma_and_space_separated_list(void **state)
{
	(void)state;
	assert_int_equal(parsed(CMD_DOWNLOAD, "title.basics, title.crew").mask,
			 TITLE_BASICS | TITLE_CREW);
	assert_int_equal(parsed(CMD_EXTRACT, "title.ratings,name.basics.tsv.gz\n").mask,
			 TITLE_RATINGS | NAME_BASICS);
	assert_int_equal(parsed(CMD_DELETE, "title.crew title.crew").mask, TITLE_CREW);
}

static void test_parse_download_names_then_force(void **state)
{
	struct command c = parsed(CMD_DOWNLOAD, "name.basics title.akas force");

	(void)state;
	assert_int_equal(c.mask, NAME_BASICS | TITLE_AKAS);
	assert_true(c.force);
}

static void test_parse_full_process_all_force(void **state)
{
	struct command c = parsed(CMD_FULL_PROCESS, "all force\n");

	(void)state;
	assert_int_equal(c.mask, ALL);
	assert_true(c.force);
}

static void test_parse_refuses_empty_and_blank(void **state)
{
	(void)state;
	refused_str(CMD_DOWNLOAD, "");
	refused_str(CMD_DOWNLOAD, "\n");
	refused_str(CMD_DOWNLOAD, " , \n");
	refused_str(CMD_DELETE, "");
}

static void test_parse_refuses_unknown_names(void **state)
{
	(void)state;
	refused_str(CMD_DOWNLOAD, "bogus");
	refused_str(CMD_DOWNLOAD, "title.basics bogus");
	refused_str(CMD_DOWNLOAD, "title.basics.tsv"); /* the decompression is not a dataset */
	refused_str(CMD_DOWNLOAD, "TITLE.BASICS");
	refused_str(CMD_DELETE, "title.basics.tsv.gz.meta");
}

static void test_parse_refuses_force_without_dataset(void **state)
{
	(void)state;
	refused_str(CMD_DOWNLOAD, "force");
	refused_str(CMD_FULL_PROCESS, "force\n");
}

static void test_parse_refuses_force_not_last(void **state)
{
	(void)state;
	refused_str(CMD_DOWNLOAD, "force all");
	refused_str(CMD_DOWNLOAD, "title.basics force title.crew");
	refused_str(CMD_DOWNLOAD, "all force force");
}

static void test_parse_refuses_force_for_extract_and_delete(void **state)
{
	(void)state;
	refused_str(CMD_EXTRACT, "title.basics force");
	refused_str(CMD_DELETE, "title.basics force");
	refused_str(CMD_DELETE, "all force\n");
}

static void test_parse_refuses_two_lines(void **state)
{
	(void)state;
	refused_str(CMD_DOWNLOAD, "all\nall\n");
	refused_str(CMD_DOWNLOAD, "title.basics\ntitle.crew");
}

static void test_parse_refuses_embedded_nul(void **state)
{
	static const char buf[] = "all\0title.basics\n";

	(void)state;
	refused(CMD_DOWNLOAD, buf, sizeof(buf) - 1);
	refused(CMD_DOWNLOAD, "title.basics\0", 13);
}

static void test_parse_refuses_5000_byte_line(void **state)
{
	static char line[5001];

	(void)state;
	/* Valid words all along: only the length is wrong. */
	for (size_t i = 0; i < 5000; i += 5)
		memcpy(line + i, "all, ", 5);
	line[4999] = '\n';
	refused(CMD_DOWNLOAD, line, 5000);
}

static void test_parse_accepts_line_of_max_length(void **state)
{
	static char line[CONTROL_MAX_WRITE + 1];
	struct command c;
	char err[256] = "";

	(void)state;
	memset(line, ' ', CONTROL_MAX_WRITE);
	memcpy(line, "title.crew", 10);
	line[CONTROL_MAX_WRITE - 1] = '\n';
	assert_int_equal(
	    control_parse_command(CMD_DOWNLOAD, line, CONTROL_MAX_WRITE, &c, err, sizeof(err)), 0);
	assert_int_equal(c.mask, TITLE_CREW);
}

int test_control_parse_group(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_all_with_and_without_newline),
	    cmocka_unit_test(test_parse_dataset_name_and_gz_file_name),
	    cmocka_unit_test(test_parse_each_dataset_sets_its_own_bit),
	    cmocka_unit_test(test_parse_comma_and_space_separated_list),
	    cmocka_unit_test(test_parse_download_names_then_force),
	    cmocka_unit_test(test_parse_full_process_all_force),
	    cmocka_unit_test(test_parse_refuses_empty_and_blank),
	    cmocka_unit_test(test_parse_refuses_unknown_names),
	    cmocka_unit_test(test_parse_refuses_force_without_dataset),
	    cmocka_unit_test(test_parse_refuses_force_not_last),
	    cmocka_unit_test(test_parse_refuses_force_for_extract_and_delete),
	    cmocka_unit_test(test_parse_refuses_two_lines),
	    cmocka_unit_test(test_parse_refuses_embedded_nul),
	    cmocka_unit_test(test_parse_refuses_5000_byte_line),
	    cmocka_unit_test(test_parse_accepts_line_of_max_length),
	};

	return cmocka_run_group_tests_name("control_parse", tests, NULL, NULL);
}
