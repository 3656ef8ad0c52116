/*
 * json.h - JSON text as imdbfs writes it everywhere (control files, cache
 * metadata): one cJSON object, pretty-printed, ending in a newline.
 */
#ifndef IMDBFS_JSON_H
#define IMDBFS_JSON_H

struct cJSON;

/*
 * Prints o followed by a newline and deletes o (NULL is allowed, as from a
 * failed build). The text is owned by the caller, free with free(); NULL on
 * ENOMEM.
 */
char *json_print_line(struct cJSON *o);

#endif
