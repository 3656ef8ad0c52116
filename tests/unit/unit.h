/*
 * unit.h - the group runners of the C unit tests. Every tests/unit/test_*.c
 * links into one binary (build/unit-tests); each file defines one runner
 * that returns its number of failed tests, and test_main.c calls them all.
 */
#ifndef IMDBFS_TESTS_UNIT_H
#define IMDBFS_TESTS_UNIT_H

/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int test_azure_auth_group(void);
int test_azure_blob_group(void);
int test_azure_retry_group(void);
int test_budget_group(void);
int test_catalog_group(void);
int test_clock_group(void);
int test_config_group(void);
int test_control_parse_group(void);
int test_control_json_group(void);
int test_dataset_size_group(void);
int test_download_group(void);
int test_extract_group(void);
int test_fdshare_group(void);
int test_dataset_version_group(void);
int test_feed_group(void);
int test_gunzip_group(void);
int test_json_group(void);
int test_retry_group(void);
int test_http_header_group(void);
int test_http_engine_group(void);
int test_meta_group(void);
int test_replicate_group(void);
int test_schedule_group(void);
int test_segment_group(void);
int test_spool_group(void);
int test_store_azure_group(void);
int test_store_local_group(void);

#endif
