/* json.c - see json.h */
#include "json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

char *json_print_line(cJSON *o)
{
	char *text = o ? cJSON_Print(o) : NULL;
	char *line;
	size_t n;

	cJSON_Delete(o);
	if (!text)
		return NULL;
	n = strlen(text);
	line = realloc(text, n + 2);
	if (!line) {
		free(text);
		return NULL;
	}
	memcpy(line + n, "\n", 2);
	return line;
}
