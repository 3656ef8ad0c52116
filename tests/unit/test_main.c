/* test_main.c - runs every unit-test group; exits non-zero if any test failed. */
#include <stdio.h>

#include "unit.h"

int main(void)
{
	static const struct {
		const char *name;
		int (*run)(void);
	} groups[] = {
	    {"azure_auth", test_azure_auth_group},
	    {"azure_blob", test_azure_blob_group},
	    {"azure_retry", test_azure_retry_group},
	    {"budget", test_budget_group},
	    {"catalog", test_catalog_group},
	    {"clock", test_clock_group},
	    {"config", test_config_group},
	    {"control_parse", test_control_parse_group},
	    {"control_json", test_control_json_group},
	    {"download", test_download_group},
	    {"extract", test_extract_group},
	    {"fdshare", test_fdshare_group},
	    {"dataset_version", test_dataset_version_group},
	    {"feed", test_feed_group},
	    {"gunzip", test_gunzip_group},
	    {"json", test_json_group},
	    {"http_header", test_http_header_group},
	    {"http_engine", test_http_engine_group},
	    {"meta", test_meta_group},
	    {"retry", test_retry_group},
	    {"replicate", test_replicate_group},
	    {"schedule", test_schedule_group},
	    {"segment", test_segment_group},
	    {"spool", test_spool_group},
	    {"store_azure", test_store_azure_group},
	    {"store_local", test_store_local_group},
	    {"dataset_size", test_dataset_size_group}, /* last: it shuts the datasets down */
	};
	int failed = 0;

	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		int n = groups[i].run();

		if (n)
			fprintf(stderr, "unit tests: group %s: %d failed\n", groups[i].name, n);
		failed += n;
	}
	fprintf(stderr, "unit tests: %zu groups, %d failed tests\n",
		sizeof(groups) / sizeof(groups[0]), failed);
	return failed ? 1 : 0;
}
