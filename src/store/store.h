/* SPDX-License-Identifier: MIT */
/* The store contract: accounts, devices, 1:1 messages, each account's
 * update log, and each device's published prekeys. All operations are
 * asynchronous: a request is queued to the store's own thread, which runs
 * queued requests in batches, one transaction and one fsync per batch
 * (group commit), and then calls each request's callback on the loop of the
 * port it was submitted through. Core sees only this header; the SQLite
 * backend is store_sqlite.c. */
#ifndef PARLEY_STORE_STORE_H
#define PARLEY_STORE_STORE_H

#include "common/compiler.h"
#include "common/text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The database schema this build writes (PRAGMA user_version); older files
 * are upgraded in place at open, newer ones refused. */
#define STORE_SCHEMA_VERSION 5
#define STORE_PUBKEY_LEN 32
#define STORE_PAGE_MAX 1000
/* Prekeys (secret chats): public keys in Signal's form, 0x05 || 32 bytes. */
#define STORE_KEY_LEN 33
#define STORE_SIG_LEN 64
#define STORE_PREKEYS_PER_UPLOAD 100 /* one-time prekeys in one UPLOAD_KEYS */
#define STORE_PREKEYS_MAX 1000       /* one-time prekeys a device may hold */
/* Secret messages: opaque envelopes, one per destination device. */
#define STORE_ENVELOPES_MAX 100      /* envelopes in one SECRET_SEND */
#define STORE_ENVELOPE_BODY_MAX 32768
#define STORE_ACK_MAX 1000           /* ids in one SECRET_ACK */
/* Auto-delete (cloud chats). */
#define STORE_TTL_MAX 31536000u      /* a chat's auto-delete time: at most a year */
#define STORE_PURGE_MAX 1000         /* messages one PURGE deletes at most */

struct store;      /* one per process; owns the writer thread */
struct store_port; /* one per event loop that submits requests */

struct store_config {
    const char *path;          /* database file; created if missing */
    unsigned max_batch;        /* most requests per transaction; 0: 1024 */
    unsigned max_queue;        /* queued requests beyond this are refused; 0: 65536 */
    unsigned user_cache;       /* users whose name and pts the writer keeps; 0: 2^20 */
    uint64_t checkpoint_bytes; /* the write-ahead log grows to this before the writer copies
                                * it into the database (and is cut back to it on disk);
                                * 0: 128 MiB */
    unsigned bulk_per_batch;   /* most bulk requests per transaction; 0: 64 */
    unsigned envelopes_per_device; /* secret envelopes one device may have queued; 0: 10000 */
};

/* What an entry of an account's update log is. */
enum store_update_kind {
    STORE_UPD_MESSAGE = 0,  /* a new message: the message fields */
    STORE_UPD_DELETED = 1,  /* messages purged: ids, n_ids */
    STORE_UPD_TTL = 2,      /* a chat's auto-delete changed: peer, ttl_s, by_peer */
};

/* One entry of an account's update log: a message row as seen from that
 * account (kind MESSAGE; also the form of HISTORY and SEND results), or
 * another kind of update. Strings and ids point into the result block of
 * the request; strings are NUL-terminated; all are valid from the callback
 * until store_req_reset() on that request. */
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
    int64_t expires;         /* unix seconds when auto-delete removes it; 0: never */
    enum store_update_kind kind; /* SYNC entries; MESSAGE elsewhere */
    const uint8_t *ids;      /* DELETED: n_ids message ids, 8 bytes each, little-endian */
    size_t n_ids;
    uint64_t peer;           /* TTL: the other member of the chat */
    uint32_t ttl_s;          /* TTL: the new setting, 0 off */
    bool by_peer;            /* TTL: the peer changed it (else this account) */
};

/* What one PURGE did to one account's log. */
struct store_purged {
    uint64_t user_id;
    uint64_t pts;           /* of the DELETED update appended */
    const uint64_t *ids;    /* the messages deleted, increasing */
    size_t n_ids;
};

/* A prekey: a one-time prekey, or a signed prekey with its signature. */
struct store_prekey {
    uint32_t id;
    uint8_t key[STORE_KEY_LEN];
};

/* One device's prekey bundle, as GET_BUNDLE hands it out. */
struct store_bundle {
    uint64_t device_id;
    uint32_t registration_id;
    uint8_t identity_key[STORE_KEY_LEN];
    struct store_prekey signed_prekey;
    uint8_t signature[STORE_SIG_LEN]; /* of signed_prekey, as uploaded */
    bool has_prekey;                  /* a one-time prekey was taken: prekey */
    struct store_prekey prekey;
    unsigned prekey_count;            /* one-time prekeys left after this fetch */
};

/* One envelope of a secret send, as given (body borrowed). */
struct store_envelope_in {
    uint64_t device_id;
    uint32_t type;
    const uint8_t *body;
    size_t body_len; /* 1..STORE_ENVELOPE_BODY_MAX */
};

/* Where SECRET_SEND put an envelope: its id, for its device of user_id. */
struct store_envelope_ref {
    uint64_t id;
    uint64_t user_id;
    uint64_t device_id;
};

/* A queued envelope as SECRET_FETCH returns it; names and body point into
 * the result block. */
struct store_envelope {
    uint64_t id;
    uint64_t message_id;
    uint64_t from_user;
    uint64_t from_device;
    uint64_t to_user;
    int64_t date;
    uint32_t type;
    const char *from_name;
    const char *to_name;
    const uint8_t *body;
    size_t body_len;
};

/* How a secret send's devices differ from one account's devices with keys. */
struct store_mismatch {
    uint64_t user_id;
    const uint64_t *missing; /* devices with keys that got no envelope */
    size_t n_missing;
    const uint64_t *stale;   /* envelopes for devices that are not such devices */
    size_t n_stale;
};

enum store_op {
    STORE_OP_SIGNUP = 1,   /* in: signup; out: user, device */
    STORE_OP_DEVICE,       /* in: device_id; out: device (for auth) */
    STORE_OP_RESOLVE,      /* in: username; out: user */
    STORE_OP_SEND,         /* in: send; out: sent */
    STORE_OP_SYNC,         /* in: sync; out: msgs (+ pts, more) */
    STORE_OP_HISTORY,      /* in: history; out: msgs */
    STORE_OP_UPLOAD_KEYS,  /* in: keys; out: prekey_count */
    STORE_OP_GET_BUNDLE,   /* in: bundle; out: bundles */
    STORE_OP_KEY_COUNT,    /* in: device_id; out: prekey_count, has_keys */
    STORE_OP_SECRET_SEND,  /* in: secret; out: msg, duplicate, envs (or mismatches) */
    STORE_OP_SECRET_FETCH, /* in: fetch; out: envelopes, more */
    STORE_OP_SECRET_ACK,   /* in: ack; out: deleted */
    STORE_OP_SET_TTL,      /* in: ttl; out: pts, to_pts */
    STORE_OP_PURGE,        /* in: purge; out: purged, more */
};

struct store_req;
typedef void store_cb(struct store_req *req);

/* A request. The caller owns it (embed it or allocate it) and must keep it
 * alive and untouched from submission until its callback is called; the
 * store never touches it after calling cb, so cb may free or resubmit it.
 * Usernames are arrays inside the request; send.text is borrowed until the
 * callback. A result may own one allocated block (SEND, SYNC, HISTORY,
 * GET_BUNDLE, SECRET_SEND (also when refused with a mismatch),
 * SECRET_FETCH, SET_TTL, PURGE):
 * call store_req_reset() once done with it, before freeing or reusing req
 * (store_submit() clears out and does not free what was left there). */
struct store_req {
    /* Input, set by the caller. */
    enum store_op op;
    store_cb *cb;
    void *data; /* the caller's */
    /* Low priority (sign-ups, logins): the writer takes every other queued
     * request first and at most store_config.bulk_per_batch of these per
     * transaction, so that a flood of them never delays the rest. */
    bool bulk;
    union {
        struct {
            char username[USERNAME_MAX + 1]; /* already normalized */
            uint8_t pubkey[STORE_PUBKEY_LEN];
        } signup;
        uint64_t device_id;              /* DEVICE, KEY_COUNT */
        char username[USERNAME_MAX + 1]; /* RESOLVE, normalized */
        struct {
            uint64_t from_user;
            uint64_t from_device;
            uint64_t to_user;
            uint64_t client_id; /* non-zero; see the contract of SEND below */
            int64_t date;       /* unix seconds; 0: the store's clock */
            const char *text; /* borrowed until the callback */
            size_t text_len;
        } send;
        struct {
            uint64_t user;
            uint64_t device;   /* its sync_pts rises to from_pts; 0: none */
            uint64_t from_pts;
            unsigned limit; /* 1..STORE_PAGE_MAX */
        } sync;
        struct {
            uint64_t user;
            uint64_t peer;
            uint64_t before_id; /* 0: newest */
            unsigned limit;     /* 1..STORE_PAGE_MAX */
        } history;
        struct {
            uint64_t device;          /* non-zero: the uploading device */
            uint32_t registration_id;
            uint8_t identity_key[STORE_KEY_LEN];
            bool has_signed;          /* signed_prekey and signature are set */
            struct store_prekey signed_prekey;
            uint8_t signature[STORE_SIG_LEN];
            const struct store_prekey *prekeys; /* borrowed until the callback */
            size_t n_prekeys;         /* 0..STORE_PREKEYS_PER_UPLOAD */
        } keys;
        struct {
            uint64_t user;        /* the account whose bundles are fetched */
            uint64_t device;      /* only this device of it; 0: all */
            uint64_t skip_device; /* never this device (the fetching one); 0: none */
        } bundle;
        struct {
            uint64_t from_user;
            uint64_t from_device;
            uint64_t to_user;
            uint64_t client_id; /* non-zero */
            int64_t date;       /* unix seconds; 0: the store's clock */
            const struct store_envelope_in *envs; /* borrowed until the callback */
            size_t n_envs;      /* 1..STORE_ENVELOPES_MAX */
        } secret;
        struct {
            uint64_t device;
            unsigned limit;   /* 1..STORE_PAGE_MAX */
            size_t max_bytes; /* bodies in one page: at most this, or one envelope */
        } fetch;
        struct {
            uint64_t device;
            const uint64_t *ids; /* borrowed until the callback */
            size_t n_ids;        /* 1..STORE_ACK_MAX */
        } ack;
        struct {
            uint64_t user;   /* who sets it */
            uint64_t peer;   /* the other member (may be user: notes to self) */
            uint32_t ttl_s;  /* 0 (off) .. STORE_TTL_MAX */
        } ttl;
        struct {
            int64_t now;     /* unix seconds: messages with expires <= now go */
            unsigned limit;  /* 1..STORE_PURGE_MAX messages (and as many envelopes) */
            int64_t envelopes_before; /* envelopes dated before this go; 0: none */
        } purge;
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
        unsigned prekey_count; /* UPLOAD_KEYS, KEY_COUNT: the device's one-time prekeys */
        bool has_keys;         /* KEY_COUNT: identity and signed prekey uploaded */
        struct store_bundle *bundles; /* GET_BUNDLE, ordered by device id */
        size_t n_bundles;
        struct store_envelope_ref *envs; /* SECRET_SEND: in the order of in.secret.envs */
        size_t n_envs;
        struct store_mismatch mismatches[2]; /* SECRET_SEND refused: recipient, sender */
        size_t n_mismatches;
        struct store_envelope *envelopes; /* SECRET_FETCH, oldest first */
        size_t n_envelopes;
        unsigned deleted;      /* SECRET_ACK */
        struct store_purged *purged; /* PURGE: one per account touched */
        size_t n_purged;
        unsigned envelopes_expired; /* PURGE: undelivered envelopes deleted */
    } out;

    /* Private to the store. */
    struct store_port *port;
    struct store_req *next;
    void *priv;
};

/* Opens (creating if needed) the database and starts the writer thread.
 * Returns 0 and sets *out, or PARLEY_EINVAL (no path) or PARLEY_ESTORE
 * (logged with the reason). */
PL_NODISCARD int store_open(const struct store_config *cfg, struct store **out);

/* Stops accepting requests (store_submit then returns PARLEY_EBUSY),
 * finishes and commits everything queued, hands every result to its port,
 * stops the thread and closes the database; blocks until then. Any thread.
 * Ports may be closed before or after: a port's callbacks run when its loop
 * runs, and its memory and the store's are freed once store_close has
 * returned and every port's close has completed (on its loop). Shutdown:
 * stop submitting, store_close(), then store_port_close() on each loop and
 * run the loops until the ports are closed. NULL is a no-op. */
void store_close(struct store *st);

/* Creates a port bound to loop (called on that loop's thread). Callbacks of
 * requests submitted through it run on that loop, in submission order among
 * requests of the same priority (a bulk request may finish after ordinary
 * ones submitted later). The
 * port keeps the loop alive only while it has requests in flight. Returns 0
 * and sets *out, or PARLEY_EINVAL (store closing) or PARLEY_EINTERNAL. */
PL_NODISCARD int store_port_open(struct store *st, uv_loop_t *loop, struct store_port **out);

/* Closes the port (async, like uv_close): requests still in flight get
 * their callbacks first, then the handle closes and the port is freed.
 * Call on the port's loop; no submissions through it afterwards (they get
 * PARLEY_EINVAL). NULL is a no-op. */
void store_port_close(struct store_port *port);

/* Queues req. Returns 0 and later calls req->cb exactly once on the port's
 * loop, for writes only after the commit is durable; or returns PARLEY_EBUSY
 * (queue full, or the store is closing) or PARLEY_EINVAL (no cb, bad op,
 * empty or unterminated username, limit outside 1..STORE_PAGE_MAX, SEND with
 * a zero user or client_id, text missing or over 4 * PARLEY_TEXT_MAX_CHARS
 * bytes, UPLOAD_KEYS with a zero device or more than
 * STORE_PREKEYS_PER_UPLOAD prekeys, GET_BUNDLE with a zero user, KEY_COUNT
 * with a zero device, SECRET_SEND with a zero user, device or client_id,
 * no envelopes or more than STORE_ENVELOPES_MAX, an envelope with device 0
 * or a body that is missing, empty or over STORE_ENVELOPE_BODY_MAX,
 * SECRET_FETCH with device 0, a limit outside 1..STORE_PAGE_MAX or max_bytes 0,
 * SECRET_ACK with device 0 or 0 or more than STORE_ACK_MAX ids, port
 * closing) and never calls it. Thread: the port's
 * loop.
 *
 * Results, in req->status and req->out:
 * SIGNUP   user_id, device_id, username, pubkey, pts 0; PARLEY_ETAKEN (name
 *          in use), PARLEY_EBAD_KEY (pubkey already registered).
 * DEVICE   user_id, device_id, username, pubkey, pts; PARLEY_ENODEVICE.
 * RESOLVE  user_id, username; PARLEY_ENOUSER.
 * SEND     msg (with from_name, to_name; msg.pts is the sender's pts),
 *          to_pts, duplicate. If (from_user, client_id) was used before,
 *          the first message is returned unchanged with duplicate set and
 *          its original sender pts, and nothing is written. PARLEY_ENOUSER
 *          if to_user (or from_user) does not exist.
 * SYNC     msgs: updates with pts > from_pts in pts order, at most limit;
 *          more if further ones exist; pts: the account's current pts.
 *          PARLEY_ENOUSER. Raises the device's stored sync_pts to from_pts.
 * HISTORY  msgs between user and peer with id < before_id, newest first,
 *          pts 0; PARLEY_ENOUSER if peer does not exist.
 * UPLOAD_KEYS  stores the device's identity key and registration id (the
 *          first time; later they must be equal: PARLEY_EIDENTITY_KEY),
 *          replaces its signed prekey if has_signed (the first upload must
 *          have one: PARLEY_EINVAL), and adds the one-time prekeys;
 *          prekey_count is the stock after it. A prekey id the device
 *          already holds (or twice in the request) is PARLEY_EPREKEY_ID,
 *          a stock above STORE_PREKEYS_MAX PARLEY_ETOO_MANY_PREKEYS; a
 *          refused upload changes nothing. Key bytes are stored as given:
 *          their form is the caller's to check.
 * GET_BUNDLE  one bundle per device of user that has uploaded keys (only
 *          bundle.device if set; never bundle.skip_device), each with one
 *          one-time prekey taken out of the stock and deleted (none when
 *          the stock is empty) and prekey_count, the stock left. Two
 *          fetches never get the same prekey. PARLEY_ENOUSER if user does
 *          not exist; PARLEY_ENOKEYS if no such device has keys.
 * KEY_COUNT  prekey_count and has_keys of the device (0 and false for a
 *          device without keys or that does not exist).
 * SECRET_SEND  stores one envelope per in.secret.envs entry, queued for its
 *          device, all under one message id (msg.id, with msg.from_user,
 *          from_device, to_user, client_id, date, from_name, to_name; no
 *          text). The devices must be exactly the devices with keys of
 *          to_user, and those of from_user other than from_device: else
 *          PARLEY_EDEVICES_CHANGED with mismatches (to_user's first, then
 *          from_user's, each only when it differs; a device that is not
 *          from_user's counts against to_user), and nothing is written. A
 *          device twice in the list is PARLEY_EINVAL (in the result, not
 *          at submit). Checked in this order: PARLEY_ENOUSER if to_user or
 *          from_user does not exist; a device twice; a retry: if
 *          (from_user, client_id) was used by a send in the last
 *          envelopes_before window (see PURGE; acked or not), duplicate is
 *          set, msg is that send's, nothing is written and envs is empty;
 *          the store keeps, per send, only its ids, recipient and date for
 *          this; PARLEY_ENOKEYS if to_user has no
 *          device with keys (other than from_device); the mismatch;
 *          PARLEY_EQUEUE_FULL if a device already has
 *          store_config.envelopes_per_device envelopes queued.
 * SECRET_FETCH  the device's queued envelopes, oldest first, at most limit
 *          and, past the first, at most max_bytes of bodies in all; more if
 *          further ones are queued.
 * SECRET_ACK  deletes the device's envelopes among ids (others' and
 *          unknown ids are ignored); deleted is how many went. The rows
 *          are overwritten in the file (secure_delete), and the write-ahead
 *          log is checkpointed and truncated once the writer is idle (under
 *          load, within 10 s).
 * SET_TTL  sets the auto-delete time of the chat of user and peer for
 *          both (0: off); messages sent afterwards get expires = date +
 *          ttl_s (SEND's msg.expires). Appends a TTL update to user's log
 *          (pts) and, for another peer, to peer's (to_pts, by_peer set);
 *          msgs[0] (n_msgs 1) carries both names: from_name the user's,
 *          to_name the peer's. In SYNC, a TTL entry's to_name is the
 *          peer's name.
 *          PARLEY_ENOUSER if peer does not exist.
 * PURGE    deletes up to limit messages whose expires <= now, oldest
 *          expiry first, found through an index on expires (never a
 *          scan), with their update rows; appends one DELETED update with
 *          their ids to the log of every account that had them (purged:
 *          its pts and ids); and up to limit secret envelopes dated before
 *          envelopes_before, never acked (envelopes_expired; the sender is
 *          not told: like Signal's server, the queue just forgets them),
 *          with the record of sends that old (their retries are new sends).
 *          more if further messages or envelopes are already due. When
 *          nothing is due it writes nothing and costs no fsync.
 * Any op: PARLEY_ESTORE if the database failed; a failing request does not
 * affect the others of its batch, a failing commit fails them all. */
PL_NODISCARD int store_submit(struct store_port *port, struct store_req *req);

/* Frees what the result of req allocated (msgs, msg strings) and clears
 * those fields; safe to call twice. req must have been submitted or zeroed. */
void store_req_reset(struct store_req *req);

/* Figures for /metrics; any thread. Only write transactions count:
 * read-only batches cost no fsync and are not recorded. */
struct store_stats {
    uint64_t commits;          /* write transactions committed */
    uint64_t committed_reqs;   /* requests in them */
    uint64_t batch_hist[8];    /* batch sizes: 1, 2-3, 4-7, ..., >=128 */
    uint64_t latency_hist[10]; /* COMMIT latency, ms: <0.25, <0.5, <1, <2, ..., <64, >=64 */
    uint64_t latency_us_sum;
    uint64_t queue_refusals;
};
void store_stats(struct store *st, struct store_stats *out);

#endif
