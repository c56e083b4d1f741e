/* SPDX-License-Identifier: MIT */
/* Runs parleyd: command line, configuration, workers, signals. */
#ifndef PARLEY_CORE_DAEMON_H
#define PARLEY_CORE_DAEMON_H

/* Returns the process exit status: 0 after a clean shutdown, 1 on a startup
 * failure or an invalid configuration, 2 on a usage error. */
int daemon_main(int argc, char **argv);

#endif
