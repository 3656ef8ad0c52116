/* version.h - the release this build is. */
#ifndef IMDBFS_VERSION_H
#define IMDBFS_VERSION_H

#define IMDBFS_VERSION "0.1.0"

#endif
