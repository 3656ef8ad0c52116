/* secret_env.c - see secret_env.h */
#include "secret_env.h"

#include <stdlib.h>
#include <string.h>

#include "azure_crypto.h"

const char *const secret_env_names[SECRET_ENV_COUNT] = {
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
};

int secret_env_any(const char *(*env)(const char *name))
{
	for (size_t i = 0; i < SECRET_ENV_COUNT; i++) {
		const char *v = env(secret_env_names[i]);

		if (v && *v)
			return 1;
	}
	return 0;
}

void secret_env_scrub(void)
{
	for (size_t i = 0; i < SECRET_ENV_COUNT; i++) {
		char *v = getenv(secret_env_names[i]);

		if (!v)
			continue;
		azure_crypto_wipe(v, strlen(v));
		unsetenv(secret_env_names[i]);
	}
}
