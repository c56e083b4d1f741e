/* SPDX-License-Identifier: MIT */
/* parleyd's configuration: an INI file (inih) plus command-line overrides,
 * validated as a whole before it is used. docs/CONFIG.md documents every
 * key; the defaults here are the ones it lists. */
#ifndef PARLEY_CORE_CONFIG_H
#define PARLEY_CORE_CONFIG_H

#include "common/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config {
    /* [server] */
    char listen_host[64];    /* IPv4 or IPv6 literal, or "localhost" */
    unsigned listen_port;    /* 0: pick a free port */
    char data_dir[512];
    bool plaintext;          /* allowed only on loopback */
    unsigned threads;        /* event loops; 0: one per core */
    bool front_loop;         /* one more loop accepts and signs devices in */
    char tls_cert[512];      /* PEM; empty: self-signed under data_dir */
    char tls_key[512];
    int log_level;           /* LOG_LEVEL_* */
    /* [limits] */
    size_t max_frame_bytes;
    unsigned max_text_chars;
    size_t send_queue_bytes;
    unsigned handshake_timeout_ms;
    unsigned idle_ping_s;
    /* [ratelimit]: token buckets; rate per second, burst in tokens */
    double ip_rate;          /* requests per second per IP address */
    double ip_burst;
    double account_rate;     /* sends per second per account */
    double account_burst;
    double signup_ip_rate;   /* sign-ups per second per IP address */
    double signup_ip_burst;
    /* [admission] */
    unsigned auth_queue_max;   /* sign-ups + logins waiting or in flight per loop before refusing */
    unsigned auth_per_turn;    /* sign-ups + logins started per loop turn */
    unsigned auth_inflight_max; /* sign-ups + logins at the store per loop */
    unsigned auth_max_wait_ms; /* one that waited this long is refused; 0: never */
    unsigned retry_after_ms;   /* advised wait when refusing for load */
    unsigned auth_turn_ms;     /* loop turns busier than this halve auth_per_turn; 0: off */
    /* [store] */
    char db_path[512];         /* empty: data_dir/parley.db */
    unsigned store_max_batch;
    unsigned store_max_queue;
    unsigned store_user_cache; /* users whose name and pts the store writer keeps in memory */
    unsigned store_checkpoint_mib; /* write-ahead log size that starts a checkpoint */
    /* [secret] */
    unsigned envelope_days;    /* undelivered secret envelopes are deleted after this */
    unsigned envelopes_per_device; /* queued for one device at most (restart to change) */
};

/* Fills defaults. */
void config_defaults(struct config *cfg);

/* Reads path into cfg (which holds defaults or earlier values). Every problem
 * is printed to err as "FILE:LINE: [section] key: why" and counted; returns
 * 0, or PARLEY_ECONFIG when there was any problem (cfg is then partly
 * written: load into a scratch copy). */
PL_NODISCARD int config_load(struct config *cfg, const char *path, FILE *err);

/* Parses "HOST:PORT" or "[V6]:PORT" into cfg. Returns 0 or PARLEY_EINVAL. */
PL_NODISCARD int config_set_listen(struct config *cfg, const char *hostport);

/* Checks the whole configuration (ranges, plaintext only on loopback, TLS
 * files readable when set). Prints each problem to err; returns 0 or
 * PARLEY_ECONFIG. */
PL_NODISCARD int config_validate(const struct config *cfg, FILE *err);

/* Whether host is a loopback address (127.0.0.0/8, ::1, localhost). */
bool config_is_loopback(const char *host);

#endif
