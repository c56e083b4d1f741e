/* SPDX-License-Identifier: MIT */
/* Starts the real parleyd on 127.0.0.1 port 0 for C integration tests, reads
 * its port from the ready line, stops it by PID, and reports sanitizer
 * findings in its stderr. */
#ifndef PARLEY_TESTS_TESTSERVER_H
#define PARLEY_TESTS_TESTSERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct testserver {
    pid_t pid;
    unsigned port;
    char dir[256];      /* data dir (removed by testserver_cleanup) */
    char url[64];       /* http://127.0.0.1:PORT */
    char err_path[300]; /* the server's stderr */
    char conf_path[300]; /* testserver_start_conf's file; removed by testserver_cleanup */
};

/* Starts parleyd --plaintext with a fresh data dir; extra args may be NULL.
 * Returns 0, or -1 with the reason on stderr. */
int testserver_start(struct testserver *s, const char *const *extra_args);

/* Starts parleyd --plaintext with a configuration made of the harness's
 * test.conf followed by conf_extra (sections and keys test.conf does not
 * set). Returns 0, or -1 with the reason on stderr. */
int testserver_start_conf(struct testserver *s, const char *conf_extra);

/* The usual teardown: SIGTERM, wait, sanitizer check, cleanup. Returns 0
 * if the server stopped cleanly with no sanitizer report, else -1. */
int testserver_finish(struct testserver *s);

/* Sends sig and waits; returns the exit status (or 128+signal). */
int testserver_stop(struct testserver *s, int sig);

/* Whether the server's stderr holds a sanitizer report (printed if so). */
bool testserver_sanitizer_report(const struct testserver *s);

/* Whether the file at path holds the n bytes at needle; a missing file
 * holds nothing. */
bool testserver_file_holds(const char *path, const void *needle, size_t n);

/* Whether the server's database or its write-ahead log holds them. */
bool testserver_store_holds(const struct testserver *s, const void *needle, size_t n);

/* Removes the data dir. */
void testserver_cleanup(struct testserver *s);

#endif
