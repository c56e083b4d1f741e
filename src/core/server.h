/* SPDX-License-Identifier: MIT */
/* The parleyd process: its configuration, the store and router it shares
 * between loops, and one worker (event loop thread) per core. session.c
 * handles the protocol on a worker; server.c runs the process. */
#ifndef PARLEY_CORE_SERVER_H
#define PARLEY_CORE_SERVER_H

#include "admission.h"
#include "common/arena.h"
#include "common/compiler.h"
#include "proto/frame.h"
#include "common/u64map.h"
#include "config.h"
#include "net/net.h"
#include "ratelimit.h"
#include "router/router.h"
#include "store/store.h"

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#define SERVER_MAX_WORKERS 64

/* A configuration shared by loops; freed when the last holder drops it. */
struct config_ref {
    struct config cfg;
    SSL_CTX *tls; /* NULL when plaintext */
    _Atomic int refs;
};

struct config_ref *config_ref_hold(struct config_ref *r);
void config_ref_drop(struct config_ref *r);

struct worker {
    struct server *srv;
    unsigned index;
    uv_thread_t thread;
    uv_loop_t loop;
    int listen_fd;                 /* handed to net_loop_start; -1: accepts nothing */
    bool front;                    /* the front loop: accepts, signs in, moves on */
    struct net_inbox inbox;        /* connections moved here from the front loop */
    struct net_loop *net;
    struct store_port *store;
    struct router_port *router;
    uv_async_t control;            /* reload and stop requests from the main thread */
    struct config_ref *conf;       /* in force on this loop */
    struct config_ref *next_conf;  /* posted by a reload; guarded by srv->lock */
    bool stop_requested;           /* guarded by srv->lock */
    bool stopping;                 /* loop-local */
    unsigned in_flight;            /* store requests submitted, callbacks pending */
    unsigned auth_in_flight;       /* sign-ups and logins among them */
    struct admission adm;          /* sign-ups and logins waiting to start */
    struct arena req_arena;        /* the request being handled: its decoded frame */
    struct frame_buf enc;          /* encoding scratch for answers and pushes */
    struct op *op_free;            /* reusable requests (session.c) */
    unsigned op_free_n;
    bool adm_open;
    struct u64map online;          /* user id -> first struct session of that user here */
    struct u64map names;           /* username hash -> struct name_cache_entry */
    uv_timer_t expiry_timer;       /* worker 0: runs the auto-delete purge (expiry.c) */
    bool expiry_on;                /* expiry_timer is initialized and not closed */
    bool purge_busy;               /* purge is at the store */
    struct store_req purge;
    int start_error;               /* set by the thread before it signals ready */
};

struct server {
    struct config_ref *conf;       /* the current one, for new workers and reloads */
    char config_path[512];         /* empty: none */
    struct config overrides;       /* command-line values, re-applied on reload */
    unsigned override_mask;
    struct store *store;
    struct router *router;
    struct ratelimit *ip_limits;
    struct ratelimit *account_limits;
    struct ratelimit *signup_limits;
    uv_mutex_t lock;
    uv_sem_t ready;
    unsigned n_workers;            /* the front loop, if any, is the last */
    unsigned n_messaging;          /* workers[0..n_messaging): where signed-in devices go */
    struct worker workers[SERVER_MAX_WORKERS];
    unsigned port;                 /* the real listening port */
};

/* Protocol handling on a worker (session.c). */
extern const struct net_callbacks session_callbacks;
void session_deliver(void *arg, uint64_t user_id, uint64_t exclude_device, uint64_t only_device,
                     const uint8_t *frame, size_t len);
/* Frees what session.c keeps per worker; after the loop has ended. */
void session_worker_free(struct worker *w);
/* Admission callbacks (admission.h) for w->adm. */
void session_admitted(struct adm_item *it, void *arg);
void session_admission_refuse(struct adm_item *it, void *arg);
void session_admission_drop(struct adm_item *it, void *arg);
/* The admission limits a configuration sets. */
struct adm_limits adm_limits_of(const struct config *cfg);
/* Called when a worker is stopping and the last store callback returned. */
void worker_maybe_finish(struct worker *w);
/* Auto-delete (expiry.c): worker 0 purges expired messages once a second
 * and tells their accounts' devices. Start on the worker's loop; stop when
 * it stops (the timer closes; a purge at the store finishes first, counted
 * in in_flight). */
int expiry_start(struct worker *w);
void expiry_stop(struct worker *w);

uint64_t server_now_ms(void);

#endif
