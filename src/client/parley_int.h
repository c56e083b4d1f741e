/* SPDX-License-Identifier: MIT */
/* libparley's internals shared by parley.c (connection, requests, cloud
 * sync), prekeys.c and the secret-chat files (secret.c, secret_send.c,
 * secret_recv.c): the struct parley and the request helpers. Not
 * installed; the public contract is include/parley.h. */
#ifndef PARLEY_CLIENT_PARLEY_INT_H
#define PARLEY_CLIENT_PARLEY_INT_H

#include <parley.h>

#include "common/compiler.h"
#include "common/text.h"
#include "e2e/e2e.h"
#include "home.h"
#include "proto/frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PUSHQ_MAX 1024 /* pushes held while a response is awaited; beyond, resync */
#define PATH_LEN 4096
#define NAME_LEN (PARLEY_USERNAME_MAX + 2) /* "@" + name + NUL */
#define TEXT_MAX_BYTES (4 * PARLEY_TEXT_MAX_CHARS)
#define CLIENT_ID_RANDOM_MASK ((UINT64_C(1) << 53) - 1) /* exact as a JSON number */

typedef Parley__V1__Request PlRequest;
typedef Parley__V1__Response PlResponse;

/* The NUL-terminated strings a struct parley_msg points to. */
struct names {
    char chat[NAME_LEN];
    char from[NAME_LEN];
    char to[NAME_LEN];
    char text[TEXT_MAX_BYTES + 1];
};

struct parley {
    char home[PATH_LEN];
    char known_path[PATH_LEN];
    char e2e_path[PATH_LEN]; /* the Signal state directory, HOME/e2e */
    struct e2e_dir e2e;      /* points at e2e_path */
    char server[256];
    int timeout_ms;
    parley_log_cb *log;
    void *log_arg;
    bool has_account;
    struct home_account acct;
    unsigned char *sk;         /* device secret key (sodium_malloc), loaded on first use */
    uint64_t pts;              /* sync position: every update up to it was delivered */
    struct wsconn *conn;       /* NULL when not connected */
    bool authed;               /* conn is authenticated as this device */
    uint64_t next_id;          /* last request id used */
    PlFrame *pushq[PUSHQ_MAX]; /* Push.update frames not yet applied, oldest first */
    size_t pushq_len;
    bool push_lost;           /* pushq overflowed: a sync must fill the hole */
    PlFrame *secq[PUSHQ_MAX]; /* Push.secret frames not yet taken, oldest first */
    size_t secq_len;
    bool secret_lost;    /* secq overflowed or the connection dropped: a fetch is owed */
    bool keys_low;       /* the server said this device's one-time prekeys run low */
    bool in_keys_check;  /* parley__keys_check is running: no nested check */
    int lock_fd;         /* HOME/secret.lock, flock'ed while lock_depth > 0 */
    unsigned lock_depth; /* nested holds of the secret-state lock by this struct */
    PlFrame *keep;       /* backs the strings of the message parley_send returned */
    struct names keep_names;
    PlFrame *last_error;     /* the last error response, for its details (Error.devices) */
    unsigned retry_after_ms; /* of the last error response */
    bool receipts_owed;      /* a read receipt may wait to be sent (secret_recv.c) */
};

/* What parley_recv is doing: its callback and how far it got. */
struct delivery {
    parley_msg_cb *cb;
    void *arg;
    size_t delivered;
    bool stop;
};

/* Logs one line through the application's callback (level 0 debug .. 3
 * error). Never pass keys, message text or bodies. */
PL_PRINTF(3, 4) void parley__log(const struct parley *p, int level, const char *fmt, ...);

/* Sends req on the authenticated connection and waits for its answer
 * (pushes meanwhile are queued). Returns 0 and *out (owned by the caller,
 * frame_free) whose response has result want; or the response's error
 * (the frame is then kept in p->last_error); or a transport error. */
PL_NODISCARD int parley__call(struct parley *p, PlRequest *req, int want, PlFrame **out);

/* parley__call after connecting, reconnecting once when the connection
 * fails before the answer. Only for idempotent requests. */
PL_NODISCARD int parley__call_authed(struct parley *p, PlRequest *req, int want, PlFrame **out);

/* True for the errors that mean the connection failed. */
bool parley__is_transport_err(int err);

/* prekeys.c, secret_recv.c: called by parley.c. */

/* Makes sure this device has a Signal identity and that the server holds
 * its keys with a stock of one-time prekeys near 100 (uploading what is
 * missing) and a signed prekey at most a week old. Needs an authenticated
 * connection. Returns 0, a transport error (the connection is dropped),
 * or the error of a local step or refused upload (logged). */
PL_NODISCARD int parley__keys_check(struct parley *p);

/* Fetches this device's queued secret envelopes until the server has no
 * more, then takes queued Push.secret frames, delivering each message once
 * to d and acking it. Returns 0 or an error. */
PL_NODISCARD int parley__secret_recv(struct parley *p, struct delivery *d, bool fetch);

/* Deletes the secret messages whose self-destruct timer ran out, each
 * chat's removals delivered to d (may be NULL) as one PARLEY_MSG_DELETED
 * entry. Returns 0, or the first error (a damaged chat is skipped and
 * logged; the others are still done). */
PL_NODISCARD int parley__secret_expire(struct parley *p, struct delivery *d);

/* How long parley_recv waits for a frame at most, so that expired secret
 * messages go within about a second. */
#define SECRET_EXPIRE_WAKE_MS 1000

/* Frees queued Push.secret frames. */
void parley__secret_clear(struct parley *p);

/* secret.c: shared with prekeys.c, secret_send.c and secret_recv.c. */

/* Takes the home's secret-state lock (HOME/secret.lock, flock), which
 * serializes changes of sessions, prekeys and trust records between the
 * processes sharing the home; nests within one struct parley. Returns 0,
 * or PARLEY_EIO, PARLEY_EINVAL (path too long). Release with
 * secret__unlock. */
PL_NODISCARD int secret__lock(struct parley *p);
void secret__unlock(struct parley *p);

/* Loads this device's Signal identity from HOME/e2e, making it (random
 * registration id) on first use. Returns 0 and *out (free out->key with
 * keys_free), or PARLEY_EPROTO (the account's device id does not fit a
 * Signal device id), PARLEY_ECONFIG (damaged, or made for another
 * device), PARLEY_EIO, PARLEY_ENOMEM, PARLEY_EINTERNAL. */
PL_NODISCARD int secret__identity(struct parley *p, struct e2e_identity *out);

/* A damaged e2e file (PARLEY_EMALFORMED, PARLEY_EVERSION there) is
 * PARLEY_ECONFIG to the application; other codes pass. */
int secret__local_err(int err);

#endif
