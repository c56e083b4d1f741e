/* SPDX-License-Identifier: MIT */
/* What the protocol handlers on a worker share: the session of a
 * connection, the op that carries one request through admission and the
 * store, and the helpers that answer and submit. session.c owns the
 * connection's life and the core methods; secret.c the secret-chat
 * methods. Internal to src/core. */
#ifndef PARLEY_CORE_SESSION_INT_H
#define PARLEY_CORE_SESSION_INT_H

#include "admission.h"
#include "common/text.h"
#include "metrics.h"
#include "proto/frame.h"
#include "server.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>

#define AUTH_CONTEXT "parley-auth-v1"
#define AUTH_CONTEXT_LEN 14
#define NONCE_LEN 32
#define SIGNATURE_LEN 64
#define SYNC_LIMIT_DEFAULT 100
#define HISTORY_LIMIT_DEFAULT 50
#define OP_TEXT_SMALL 256  /* texts up to this many bytes live inside the op */
#define OP_FREE_MAX 4096   /* ops a worker keeps for reuse */
#define ENCODE_KEEP 65536  /* the encode buffer shrinks back past this */
/* Bytes of a page frame (sync, history, fetch) besides its entries
 * (version, ids, pts, more, tags and lengths, each at its longest), and
 * per entry besides the entry itself (its tag and length). */
#define PAGE_FRAME_OVERHEAD 64
#define PAGE_ENTRY_OVERHEAD 6
/* Prekeys: Signal's key form is a type byte (0x05, Curve25519) and 32 key
 * bytes; registration ids are 14 bits, as libsignal makes them. */
#define KEY_TYPE_DJB 0x05
#define REGISTRATION_ID_MAX 0x3fff
/* A bundle fetch leaving a device fewer one-time prekeys than this tells
 * that device to upload more. */
#define PREKEYS_LOW 10

struct session {
    struct net_conn *conn; /* NULL once the connection is gone */
    struct worker *w;
    unsigned refs;         /* one for the connection, one per pending store request */
    uint64_t ip_key;
    uint8_t nonce[NONCE_LEN];
    bool has_nonce;        /* nonce is unused; cleared by its first use */
    bool authed;
    bool moving;           /* signed in on the front loop, on its way to a messaging loop */
    uint64_t user_id;
    uint64_t device_id;
    struct session *next_online; /* other sessions of user_id on this loop */
    struct session *prev_online;
};

/* A request waiting for admission or the store. */
struct op {
    struct adm_item adm;   /* sign-up, login: while waiting for admission */
    struct store_req req;
    struct session *s;
    uint64_t request_id;
    enum metrics_method method;
    bool resolving;        /* step one of a request to a peer: looking up its name */
    void (*peer_start)(struct op *op, uint64_t peer); /* then this fills the request */
    char peer_name[USERNAME_MAX + 1];
    char *text;            /* send: text_small, or an owned copy when longer */
    size_t text_len;
    struct op *free_next;  /* in the worker's free list */
    char text_small[OP_TEXT_SMALL];
    uint64_t client_id;
    uint64_t before_id;
    uint64_t device_filter;       /* get_bundle: only this device of the peer */
    struct store_prekey *prekeys; /* upload_keys: owned copy of the request's */
    void *owned;                  /* secret methods: envelopes or ids the store reads */
    size_t owned_len;             /* bytes of owned */
    size_t owned_n;               /* entries at the start of owned (envelopes, ids) */
    unsigned limit;
    uint32_t ttl_s;               /* set_ttl */
    uint8_t signature[SIGNATURE_LEN];
    uint8_t nonce[NONCE_LEN];
};

static inline const struct config *cfg_of(const struct session *s)
{
    return &s->w->conf->cfg;
}

/* Encodes and queues a frame; a connection that is gone drops it. */
void session_send_frame(struct session *s, const PlFrame *f);
/* Answers op's request with resp (its id filled in here). */
void session_respond_to(const struct op *op, Parley__V1__Response *resp);
/* Answers request id with an error (retry_after_ms with BUSY and
 * RATE_LIMITED) and counts it. */
void session_respond_error(struct session *s, uint64_t id, enum metrics_method m, int err,
                           uint32_t retry_after_ms);
/* The wait advised with BUSY, with jitter. */
uint32_t session_busy_retry_ms(const struct config *cfg);

/* Paging by frame size (sync, history, fetch_secret): whether one more
 * entry of `packed` bytes goes into the page that already holds *used
 * bytes (the first entry always does, so that paging goes on); if so, it
 * is counted in *used. */
bool session_page_take(const struct session *s, size_t *used, size_t packed, bool first);
/* An op from the worker's free list, for request id of method m. */
struct op *session_op_new(struct session *s, uint64_t request_id, enum metrics_method m);
void session_op_free(struct op *op);
/* Submits op to the store; on refusal answers the request and frees op. */
void session_submit(struct op *op);
/* Takes one from the account's request rate (sends, bundle fetches, key
 * uploads, settings); false after answering RATE_LIMITED. */
bool session_account_rate_ok(struct session *s, uint64_t id, enum metrics_method m);
/* Submits op for a request to peer: start fills op's store request once
 * the peer's user id is known, at once (given or cached) or after a store
 * lookup of the name. A bad peer is answered and op freed. */
void session_submit_to_peer(struct op *op, const Parley__V1__Peer *peer,
                            void (*start)(struct op *op, uint64_t peer));

/* Secret chats (secret.c). Each handle_* answers or submits; the *_start
 * function continues a send once its peer is resolved; *_done answers a
 * request the store completed (status 0, or a status the method answers
 * itself: see secret_send_failed). */
void secret_handle_send(struct session *s, uint64_t id, const Parley__V1__SendSecretRequest *r);
void secret_send_start(struct op *op, uint64_t to_user);
void secret_send_done(struct op *op);
/* A refused secret send: DEVICES_CHANGED carries the mismatch. */
void secret_send_failed(struct op *op);
void secret_handle_fetch(struct session *s, uint64_t id, const Parley__V1__FetchSecretRequest *r);
void secret_fetch_done(struct op *op);
void secret_handle_ack(struct session *s, uint64_t id, const Parley__V1__AckSecretRequest *r);
void secret_ack_done(struct op *op);

/* Auto-delete settings (expiry.c). */
void expiry_handle_set_ttl(struct session *s, uint64_t id, const Parley__V1__SetTtlRequest *r);
void expiry_set_ttl_start(struct op *op, uint64_t peer);
void expiry_set_ttl_done(struct op *op);

#endif
