/* SPDX-License-Identifier: MIT */
/* libparley: the parley client library, and its only public header.
 *
 * A struct parley is one device: its keys and local state live in a home
 * directory, and it talks to one server over one connection (WebSocket over
 * TLS, or plaintext to a loopback server). Calls are blocking and not
 * thread-safe: use one struct parley from one thread at a time. libparley
 * never prints; it reports through the log callback of parley_options.
 *
 * Every fallible function returns 0 or a negative PARLEY_E* code;
 * parley_strerror() gives its text. */
#ifndef PARLEY_H
#define PARLEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, number, text): the error table, shared with the wire protocol
 * (the wire carries the positive number). Numbers never change. */
#define PARLEY_ERRNO_MAP(X)                                                                        \
    X(EINVAL, 1, "invalid argument")                                                               \
    X(EMALFORMED, 2, "malformed frame")                                                            \
    X(ETOOBIG, 3, "frame too large")                                                               \
    X(EUNKNOWN_METHOD, 4, "unknown method")                                                        \
    X(EVERSION, 5, "unsupported protocol version")                                                 \
    X(EBAD_USERNAME, 6, "invalid username")                                                        \
    X(ETAKEN, 7, "username taken")                                                                 \
    X(ENOUSER, 8, "no such user")                                                                  \
    X(ENOAUTH, 9, "not authenticated")                                                             \
    X(EBAD_SIGNATURE, 10, "bad signature")                                                         \
    X(EBAD_NONCE, 11, "unknown or used nonce")                                                     \
    X(ETEXT_TOO_LONG, 12, "text too long")                                                         \
    X(EBAD_UTF8, 13, "invalid UTF-8")                                                              \
    X(ERATE_LIMITED, 14, "rate limited")                                                           \
    X(EBUSY, 15, "server busy")                                                                    \
    X(EINTERNAL, 16, "internal error")                                                             \
    X(ENOMEM, 17, "out of memory")                                                                 \
    X(ENODEVICE, 18, "no such device")                                                             \
    X(EALREADY_AUTH, 19, "already authenticated")                                                  \
    X(EBAD_KEY, 20, "invalid public key")                                                          \
    X(ESTORE, 21, "storage failure")                                                               \
    X(ETIMEOUT, 22, "timed out")                                                                   \
    X(ECONNECT, 23, "cannot connect")                                                              \
    X(ETLS, 24, "TLS failure")                                                                     \
    X(ECERT_CHANGED, 25, "server certificate changed")                                             \
    X(EPROTO, 26, "protocol violation")                                                            \
    X(ECLOSED, 27, "connection closed")                                                            \
    X(ENOACCOUNT, 28, "no account on this device")                                                 \
    X(EEXIST, 29, "already exists")                                                                \
    X(EIO, 30, "input/output error")                                                               \
    X(ECONFIG, 31, "invalid configuration")                                                        \
    X(ENOTFOUND, 32, "not found")                                                                  \
    X(EIDENTITY_KEY, 33, "identity key already set")                                               \
    X(EPREKEY_ID, 34, "prekey id already used")                                                    \
    X(ETOO_MANY_PREKEYS, 35, "too many prekeys")                                                   \
    X(ENOKEYS, 36, "no keys published")                                                            \
    X(EDEVICES_CHANGED, 37, "device list out of date")                                             \
    X(EUNTRUSTED_IDENTITY, 38, "peer identity key changed")                                        \
    X(EQUEUE_FULL, 39, "too many undelivered messages for a device")

enum parley_error {
#define PARLEY_ERR_ENUM_(name, num, text) PARLEY_##name = -(num),
    PARLEY_ERRNO_MAP(PARLEY_ERR_ENUM_)
#undef PARLEY_ERR_ENUM_
};

#if defined(__GNUC__)
#define PARLEY_API __attribute__((visibility("default")))
#else
#define PARLEY_API
#endif

#define PARLEY_USERNAME_MAX 32
#define PARLEY_TEXT_MAX_CHARS 4096

struct parley;

typedef void parley_log_cb(void *arg, int level, const char *line); /* level: 0 debug .. 3 error */

struct parley_options {
    const char *home;       /* device state directory; NULL: $PARLEY_HOME or ~/.parley */
    const char *server_url; /* https://HOST:PORT or http://LOOPBACK:PORT; NULL: $PARLEY_SERVER or
                               https://127.0.0.1:8443 */
    int timeout_ms;         /* per network operation; 0: 10000 */
    parley_log_cb *log;     /* may be NULL */
    void *log_arg;
};

/* What a delivered entry is: a message, messages removed (cloud
 * auto-delete, or a secret message's timer), or a chat's auto-delete time
 * or secret timer changed (by from_user_id; chat names the chat). */
enum parley_msg_kind {
    PARLEY_MSG_TEXT = 0,
    PARLEY_MSG_DELETED = 1,
    PARLEY_MSG_TTL = 2,
};

/* A message. Strings are valid until the next call on the same struct parley
 * (or, in a callback, until the callback returns). */
struct parley_msg {
    uint64_t id;         /* server message id */
    uint64_t pts;        /* position in this account's update log; 0 from history */
    uint64_t client_id;  /* the sender's idempotency key */
    uint64_t from_user_id;
    uint64_t to_user_id;
    int64_t date;        /* unix seconds */
    const char *chat;    /* "@peer": the other party of the 1:1 chat */
    const char *from;    /* "@sender" */
    const char *to;      /* "@recipient" */
    const char *text;    /* UTF-8, NUL-terminated */
    size_t text_len;     /* bytes */
    bool outgoing;       /* sent by this account */
    bool duplicate;      /* from parley_send: the client id was used before */
    bool secret;         /* end-to-end encrypted (a secret chat): id is the message id
                            shared by the envelopes of the send; pts 0; client_id 0 when
                            received */
    bool identity_changed; /* secret: the sending device's identity key changed and is not
                              accepted (parley_verify_accept) */
    enum parley_msg_kind kind; /* what this entry is; the fields above describe a TEXT */
    int64_t expires;     /* unix seconds when it is deleted (cloud auto-delete, or a secret
                            message's timer once read); 0: not scheduled */
    uint32_t timer_s;    /* secret: the self-destruct timer it was sent with; 0: none */
    uint32_t ttl_s;      /* kind TTL: the chat's new auto-delete time or timer; 0: off */
    const uint64_t *deleted_ids; /* kind DELETED: the message ids removed */
    size_t n_deleted;
};

/* Returns 0 to go on, non-zero to stop the call that invoked it. It must
 * not call libparley on the same struct parley. */
typedef int parley_msg_cb(void *arg, const struct parley_msg *msg);

struct parley_account {
    char username[PARLEY_USERNAME_MAX + 1];
    uint64_t user_id;
    uint64_t device_id;
    uint64_t pts;         /* this device's sync position */
    char server[256];     /* the server URL this account lives on */
};

/* Opens the device state in the home directory (created 0700 if missing).
 * Does not connect. Returns 0 and sets *out, or PARLEY_EINVAL (bad URL),
 * PARLEY_ECONFIG (a state file in the home directory is corrupt),
 * PARLEY_EIO, PARLEY_ENOMEM. */
PARLEY_API int parley_open(const struct parley_options *opt, struct parley **out);

/* Closes the connection, wipes keys from memory and frees. NULL: no-op. */
PARLEY_API void parley_close(struct parley *p);

/* Creates an account with a fresh device key, saved in the home directory.
 * PARLEY_EEXIST if this home already has an account; PARLEY_EBAD_USERNAME,
 * PARLEY_ETAKEN, PARLEY_ERATE_LIMITED, network errors otherwise. */
PARLEY_API int parley_signup(struct parley *p, const char *username);

/* Connects and authenticates, if not already connected. Other calls do this
 * themselves; it is public for programs that want to connect up front. */
PARLEY_API int parley_connect(struct parley *p);

/* The local account. PARLEY_ENOACCOUNT before signup. */
PARLEY_API int parley_whoami(struct parley *p, struct parley_account *out);

/* Sends text (len bytes of UTF-8) to peer ("@name" or "name"). client_id 0
 * picks a random one; passing the same non-zero id again returns the first
 * message with duplicate set instead of sending twice. On success *out (may
 * be NULL) describes the stored message. */
PARLEY_API int parley_send(struct parley *p, const char *peer, const char *text, size_t len,
                uint64_t client_id, struct parley_msg *out);

/* Delivers everything new since this device's last sync, oldest first and
 * each exactly once, then persists the new sync position; then this
 * device's secret messages (secret set), each stored in the home before
 * it is delivered and acked to the server after. If nothing was
 * new, waits up to timeout_ms (-1: forever, 0: not at all) for the first
 * live message. With follow, keeps delivering live messages until
 * timeout_ms passes, cb returns non-zero, or the connection fails; on a gap
 * in pts it syncs the difference. Returns 0 (also on timeout) or an error. */
PARLEY_API int parley_recv(struct parley *p, int timeout_ms, bool follow, parley_msg_cb *cb, void *arg);

/* Delivers up to limit (0: 50) messages of the chat with peer, newest
 * first, with ids below before_id (0: from the newest). */
PARLEY_API int parley_history(struct parley *p, const char *peer, uint64_t before_id, unsigned limit,
                   parley_msg_cb *cb, void *arg);

/* The server URL this struct parley connects to: options.server_url, else
 * $PARLEY_SERVER, else the account's server, else https://127.0.0.1:8443.
 * Valid until parley_close. */
PARLEY_API const char *parley_server_url(const struct parley *p);

/* The retry_after_ms the server sent with the last failed call's error
 * (PARLEY_ERATE_LIMITED, PARLEY_EBUSY), or 0. */
PARLEY_API unsigned parley_retry_after_ms(const struct parley *p);

/* Secret chats: end-to-end encrypted with the Signal protocol, one session
 * per device of the peer. The server only routes envelopes; messages are
 * kept on this device (see docs/internals/client.md). A peer device's
 * identity key is trusted on first use; when it changes, sending to the
 * peer fails with PARLEY_EUNTRUSTED_IDENTITY until the user compares
 * safety numbers (parley_verify) and accepts (parley_verify_accept). */

#define PARLEY_SAFETY_NUMBER_SIZE 72 /* 60 digits in 12 groups of 5, spaces, NUL */

/* What two people compare to check they hold each other's keys. */
struct parley_safety {
    char number[PARLEY_SAFETY_NUMBER_SIZE]; /* "12345 67890 ..." */
    uint64_t device_id;                     /* the peer's device it covers: a changed one
                                               first, else the lowest id */
    bool changed; /* a device's identity key changed and is not accepted: sending is blocked */
};

/* Fetches the prekey bundles of every device of peer ("@name" or "name"),
 * verifies each signed prekey's signature and starts (or restarts) a
 * session with each device, saved in the home; devices no longer listed
 * are forgotten. Keys are trusted on first use. Returns 0; or
 * PARLEY_EUNTRUSTED_IDENTITY when a device's key differs from the one
 * recorded (the sessions are started and the new key recorded, but
 * sending stays blocked); PARLEY_EBAD_USERNAME, PARLEY_EINVAL (peer is
 * this account), PARLEY_ENOACCOUNT, PARLEY_ENOUSER, PARLEY_ENOKEYS (no
 * device of peer can receive secret messages), PARLEY_EBAD_SIGNATURE (a
 * bundle's signature is wrong; nothing is saved), PARLEY_EPROTO,
 * PARLEY_ECONFIG (a damaged file in the home), PARLEY_EIO, PARLEY_ENOMEM,
 * network errors. */
PARLEY_API int parley_secret_start(struct parley *p, const char *peer);

/* Sends text (len bytes of UTF-8) in the secret chat with peer, encrypted
 * once for each of its devices and of this account's other devices;
 * starts the sessions first if there are none. client_id as for
 * parley_send. When the server says the device list is out of date, the
 * sessions are fixed and the send retried, at most twice. On success *out
 * (may be NULL) describes the message (secret set; strings valid until the
 * next call) and it is kept in the home. Errors: those of parley_send and
 * of parley_secret_start; PARLEY_EUNTRUSTED_IDENTITY (a device's key
 * changed and is not accepted: nothing is sent); PARLEY_EDEVICES_CHANGED
 * (the device list kept changing). */
PARLEY_API int parley_send_secret(struct parley *p, const char *peer, const char *text, size_t len,
                                  uint64_t client_id, struct parley_msg *out);

/* The safety number of the secret chat with peer (no network): the
 * identity keys of this device and of one device of the peer as last
 * seen (out->device_id: of the devices whose key changed and is not
 * accepted, else of all, the one with the lowest id), with the two user ids in
 * decimal as the stable identifiers, so both people see the same 60
 * digits. Returns 0 and *out,
 * or PARLEY_ENOTFOUND (no key of peer recorded yet: start a secret chat or
 * receive a secret message first), PARLEY_EBAD_USERNAME,
 * PARLEY_ENOACCOUNT, PARLEY_ECONFIG, PARLEY_EIO, PARLEY_ENOMEM. */
PARLEY_API int parley_verify(struct parley *p, const char *peer, struct parley_safety *out);

/* Accepts the current identity key of the device parley_verify shows,
 * and only it, so that only a key the user compared is accepted; when
 * more devices of peer changed, parley_verify shows the next one, and
 * sending stays blocked until each is accepted (no network). Returns 0
 * (also when nothing was changed), or the errors of parley_verify. */
PARLEY_API int parley_verify_accept(struct parley *p, const char *peer);

/* Auto-delete of the cloud chat with peer, for both members: messages
 * sent from now on are deleted ttl_s seconds after they were sent (0:
 * off; at most 31536000, a year), everywhere. Returns 0, or
 * PARLEY_EINVAL, PARLEY_EBAD_USERNAME, PARLEY_ENOUSER, PARLEY_ENOACCOUNT,
 * network errors. */
PARLEY_API int parley_set_ttl(struct parley *p, const char *peer, uint32_t ttl_s);

/* The self-destruct timer of the secret chat with peer (0: off; 1 to
 * 604800 s, a week): sent to the peer as a secret message, and used for
 * the messages this device sends from now on. A message's timer starts
 * when its recipient reads it (parley_recv delivers it); then both sides
 * delete it. Errors: those of parley_send_secret, PARLEY_EINVAL. */
PARLEY_API int parley_secret_timer(struct parley *p, const char *peer, uint32_t timer_s);

/* Text and symbolic name ("ENOUSER") of an error code; never NULL. */
PARLEY_API const char *parley_strerror(int err);
PARLEY_API const char *parley_errname(int err);

#ifdef __cplusplus
}
#endif

#endif
