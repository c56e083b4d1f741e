/* SPDX-License-Identifier: MIT */
/* The store contract: accounts, devices, 1:1 messages and each account's
 * update log. All operations are asynchronous: a request is queued to the
 * store's own thread, which runs queued requests in batches, one transaction
 * and one fsync per batch (group commit), and then calls each request's
 * callback on the loop of the port it was submitted through. Core sees only
 * this header; the SQLite backend is store_sqlite.c. */
#ifndef PARLEY_STORE_STORE_H
#define PARLEY_STORE_STORE_H

#include "common/compiler.h"
#include "common/text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define STORE_PUBKEY_LEN 32
#define STORE_PAGE_MAX 1000

struct store;      /* one per process; owns the writer thread */
struct store_port; /* one per event loop that submits requests */

struct store_config {
    const char *path;          /* database file; created if missing */
    unsigned max_batch;        /* most requests per transaction (e.g. 1024) */
    unsigned max_queue;        /* queued requests beyond this are refused */
};

/* One message row as seen from one account's log. Strings point into the
 * result and are valid only during the callback. */
struct store_msg {
    uint64_t id;             /* global, increasing */
    uint64_t from_user;
    uint64_t from_device;
    uint64_t to_user;
    uint64_t client_id;      /* sender's idempotency key */
    int64_t date;            /* unix seconds */
    uint64_t pts;            /* pts of this update in the reading account's log; 0 in history */
    const char *from_name;
    const char *to_name;
    const char *text;
    size_t text_len;         /* bytes */
};

enum store_op {
    STORE_OP_SIGNUP = 1,   /* in: signup; out: user, device */
    STORE_OP_DEVICE,       /* in: device_id; out: device (for auth) */
    STORE_OP_RESOLVE,      /* in: username; out: user */
    STORE_OP_SEND,         /* in: send; out: sent */
    STORE_OP_SYNC,         /* in: sync; out: msgs (+ pts, more) */
    STORE_OP_HISTORY,      /* in: history; out: msgs */
};

struct store_req;
typedef void store_cb(struct store_req *req);

/* A request. The caller owns it (embed it or allocate it) and must keep it
 * alive and untouched from submission until its callback has returned;
 * store_req_reset() releases what a result allocated. Input strings are
 * copied by the submit call. */
struct store_req {
    /* Input, set by the caller. */
    enum store_op op;
    store_cb *cb;
    void *data; /* the caller's */
    union {
        struct {
            char username[USERNAME_MAX + 1]; /* already normalized */
            uint8_t pubkey[STORE_PUBKEY_LEN];
        } signup;
        uint64_t device_id;
        char username[USERNAME_MAX + 1]; /* RESOLVE, normalized */
        struct {
            uint64_t from_user;
            uint64_t from_device;
            uint64_t to_user;
            uint64_t client_id;
            int64_t date;
            const char *text; /* borrowed until the callback */
            size_t text_len;
        } send;
        struct {
            uint64_t user;
            uint64_t device;
            uint64_t from_pts;
            unsigned limit; /* 1..STORE_PAGE_MAX */
        } sync;
        struct {
            uint64_t user;
            uint64_t peer;
            uint64_t before_id; /* 0: newest */
            unsigned limit;     /* 1..STORE_PAGE_MAX */
        } history;
    } in;

    /* Output, valid in the callback when status == 0. */
    int status; /* 0, PARLEY_ETAKEN, PARLEY_ENOUSER, PARLEY_ENODEVICE, PARLEY_ESTORE, ... */
    struct {
        uint64_t user_id;
        uint64_t device_id;
        char username[USERNAME_MAX + 1];
        uint8_t pubkey[STORE_PUBKEY_LEN];
        uint64_t pts;          /* account's current pts (DEVICE, SYNC) */
        bool duplicate;        /* SEND: client_id was used before */
        uint64_t to_pts;       /* SEND: pts in the recipient's log (0 if duplicate or self) */
        struct store_msg msg;  /* SEND: the message, pts = sender's pts */
        struct store_msg *msgs;/* SYNC, HISTORY */
        size_t n_msgs;
        bool more;             /* SYNC: more after the last returned */
    } out;

    /* Private to the store. */
    struct store_port *port;
    struct store_req *next;
    void *priv;
};

/* Opens (creating if needed) the database and starts the writer thread.
 * Returns 0 and sets *out, or PARLEY_ESTORE (logged with the reason). */
PL_NODISCARD int store_open(const struct store_config *cfg, struct store **out);

/* Stops accepting requests, finishes and commits everything queued, calls
 * every pending callback through its port, stops the thread and closes.
 * All ports must have been closed first. NULL is a no-op. */
void store_close(struct store *st);

/* Creates a port bound to loop (called on that loop's thread). Callbacks of
 * requests submitted through it run on that loop. */
PL_NODISCARD int store_port_open(struct store *st, uv_loop_t *loop, struct store_port **out);

/* Closes the port's handle (async, like uv_close); requests still in flight
 * complete first. Call on the port's loop after all its requests finished. */
void store_port_close(struct store_port *port);

/* Queues req. Returns 0 and later calls req->cb exactly once on the port's
 * loop; or returns PARLEY_EBUSY (queue full) or PARLEY_EINVAL and never
 * calls it. Thread: the port's loop. */
PL_NODISCARD int store_submit(struct store_port *port, struct store_req *req);

/* Frees what the result of req allocated (msgs); safe to call twice. */
void store_req_reset(struct store_req *req);

/* Figures for /metrics; any thread. */
struct store_stats {
    uint64_t commits;          /* transactions committed */
    uint64_t committed_reqs;   /* requests in them */
    uint64_t batch_hist[8];    /* batch sizes: 1, 2-3, 4-7, ..., >=128 */
    uint64_t latency_hist[10]; /* commit latency: <0.25ms, <0.5, <1, <2, <4, <8, <16, <32, <64, >=64 */
    uint64_t latency_us_sum;
    uint64_t queue_refusals;
};
void store_stats(struct store *st, struct store_stats *out);

#endif
