/*
 * azure_listing.h - the parser of one List Blobs page (the XML
 * enumeration the service returns), into the struct azure_blob_item of
 * each <Blob>.
 *
 * The page is untrusted and given with its length (not NUL-terminated): the
 * parser reads nothing past it. By hand rather than with an XML library:
 * the listing's schema is flat and fixed (elements of the same name do not
 * nest in it), and a library for it would be the biggest dependency we
 * have. Entities (the five named ones and numeric references) are decoded;
 * names that XML cannot carry come percent-encoded (Encoded="true") and are
 * decoded too; every decoded name must be well-formed UTF-8, as every blob
 * name is (json_utf8_valid). A field too long for its buffer makes the page
 * malformed, never a name cut short; received metadata that does not fit is
 * dropped and marked (azure_meta_store).
 *
 * Stateless: any thread, no locks.
 */
#ifndef IMDBFS_AZURE_LISTING_H
#define IMDBFS_AZURE_LISTING_H

#include <stddef.h>

#include "azure_blob.h"

/*
 * Calls each per <Blob> in page order (0 to go on) and sets marker (markcap
 * bytes) to the page's NextMarker, empty on the last page. 0, each's
 * non-zero return, -ENOMEM, or -EPROTO for a malformed page or a field too
 * long for its buffer. Exported for the unit tests and the fuzzer.
 */
int azure_listing_parse(const char *xml, size_t len,
			int (*each)(void *ctx, const struct azure_blob_item *it), void *ctx,
			char *marker, size_t markcap);

#endif
