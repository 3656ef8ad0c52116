/* azure_meta.c - see azure_meta.h */
#include "azure_meta.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static bool valid_meta_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len >= AZURE_META_NAME || !islower((unsigned char)*n))
		return false;
	for (; *n; n++)
		if (!islower((unsigned char)*n) && !isdigit((unsigned char)*n))
			return false;
	return true;
}

static bool valid_meta_value(const char *v)
{
	size_t len = strlen(v);

	if (len >= AZURE_META_VALUE || (len && (v[0] == ' ' || v[len - 1] == ' ')))
		return false;
	for (; *v; v++)
		if (*v < 0x20 || *v > 0x7e)
			return false;
	return true;
}

bool azure_meta_valid(const char *name, const char *value)
{
	return valid_meta_name(name) && valid_meta_value(value);
}

const char *azure_meta_get(const struct azure_meta *m, const char *name)
{
	for (size_t i = 0; i < m->count; i++)
		if (strcasecmp(m->item[i].name, name) == 0)
			return m->item[i].value;
	return NULL;
}

bool azure_meta_store(struct azure_meta *m, const char *name, size_t name_len, const char *value)
{
	size_t i;

	if (name_len >= AZURE_META_NAME || strlen(value) >= AZURE_META_VALUE)
		return false;
	for (i = 0; i < m->count; i++)
		if (strlen(m->item[i].name) == name_len &&
		    strncasecmp(m->item[i].name, name, name_len) == 0)
			break;
	if (i == AZURE_META_MAX)
		return false;
	memcpy(m->item[i].name, name, name_len);
	m->item[i].name[name_len] = '\0';
	strcpy(m->item[i].value, value);
	if (i == m->count)
		m->count++;
	return true;
}

int azure_meta_set(struct azure_meta *m, const char *name, const char *value)
{
	if (!valid_meta_name(name) || !valid_meta_value(value))
		return -EINVAL;
	return azure_meta_store(m, name, strlen(name), value) ? 0 : -ENOSPC;
}
