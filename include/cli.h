/*
 * cli.h - the client subcommands, which talk to a running mount only through
 * its .control/ files:
 *   imdbfs status MOUNTPOINT [--watch]   per-dataset progress
 *   imdbfs wait MOUNTPOINT [--timeout S] block until the running jobs end
 */
#ifndef IMDBFS_CLI_H
#define IMDBFS_CLI_H

/* argv[0] is the subcommand. Each returns the process exit status. */
int cli_status(int argc, char *argv[]);
int cli_wait(int argc, char *argv[]);

#endif
