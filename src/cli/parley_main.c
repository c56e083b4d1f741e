/* SPDX-License-Identifier: MIT */
/* parley: the command-line client. It uses only libparley's public header
 * (and jansson for --json), turns each command into one or two library
 * calls, and owns all printing: results on stdout, at most one
 * "parley: <text>" line on stderr. */
#include <parley.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EXIT_USAGE 2
#define STDIN_TEXT_MAX (1024 * 1024) /* the library refuses anything over 4096 characters */

struct cli {
    const char *server; /* NULL: libparley decides */
    const char *home;   /* NULL: libparley decides */
    bool json;
    struct parley *p;
    int log_level;      /* libparley lines at or above it go to stderr; 4: none */
};

static const char usage_main[] =
    "usage: parley [--server URL] [--home DIR] [--json] COMMAND [ARGS...]\n"
    "\n"
    "commands:\n"
    "  signup NAME                          create an account on this device\n"
    "  whoami                               show this device's account\n"
    "  send [--secret] [--client-id N] PEER TEXT   send TEXT ('-': stdin) to PEER (@name);\n"
    "                                       --secret: end-to-end encrypted\n"
    "  recv [--follow] [--timeout S]        print messages new since the last recv\n"
    "  history PEER [--limit N] [--before MSGID]   page a chat, newest first\n"
    "  secret start PEER                    start a secret (end-to-end encrypted) chat\n"
    "  verify PEER [--accept]               show the safety number of the secret chat;\n"
    "                                       --accept: trust PEER's current identity key\n"
    "  ttl [--secret] PEER SECONDS          auto-delete the chat's new messages after SECONDS\n"
    "                                       (0: off); --secret: the secret chat's timer\n"
    "\n"
    "options:\n"
    "  --server URL   https://HOST:PORT, or http:// to a loopback host\n"
    "                 (default: $PARLEY_SERVER, the account's server, https://127.0.0.1:8443)\n"
    "  --home DIR     device state (default: $PARLEY_HOME, else ~/.parley)\n"
    "  --json         one JSON object per line\n"
    "  --help         this text; 'parley COMMAND --help' for one command\n"
    "--server, --home and --json may also follow the command, up to a '--'\n"
    "(send @bob -- --json sends the text \"--json\").\n"
    "\n"
    "PARLEY_LOG=debug|info|warn|error prints libparley's log lines to stderr.\n";

struct command {
    const char *name;
    const char *usage;
    int (*run)(struct cli *cli, int argc, char **argv);
};

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorf(const char *fmt, ...)
{
    va_list ap;
    fputs("parley: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Prints "parley: <what><arg> (usage: ...)", one line; returns the usage exit code. */
static int usage_error(const char *usage, const char *what, const char *arg)
{
    size_t n = strcspn(usage, "\n");
    fprintf(stderr, "parley: %s%s (%.*s)\n", what, arg, (int)n, usage);
    return EXIT_USAGE;
}

/* "host:port" of url, as libparley names it in known_servers. */
static void url_hostport(const char *url, char *out, size_t size)
{
    const char *rest = url, *def = "443";
    if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
        def = "80";
    }
    size_t n = strcspn(rest, "/");
    const char *bracket = memchr(rest, ']', n);
    const char *from = bracket ? bracket : rest;
    bool has_port = memchr(from, ':', n - (size_t)(from - rest)) != NULL;
    if (has_port)
        snprintf(out, size, "%.*s", (int)n, rest);
    else
        snprintf(out, size, "%.*s:%s", (int)n, rest, def);
}

/* Prints the one error line for err; what names the object (a peer, a
 * username) where the error is about one. */
static int fail(struct cli *cli, int err, const char *what)
{
    const char *url = cli->p ? parley_server_url(cli->p) : (cli->server ? cli->server : "");
    unsigned retry = cli->p ? parley_retry_after_ms(cli->p) : 0;
    char hp[300];
    const char *at = what && what[0] != '@' ? "@" : "";
    switch (err) {
    case PARLEY_ENOUSER:
        errorf("no such user: %s%s", at, what ? what : "");
        break;
    case PARLEY_ETAKEN:
        errorf("username taken: %s%s", at, what ? what : "");
        break;
    case PARLEY_EBAD_USERNAME:
        errorf("invalid username: %s (3-32 of a-z, 0-9, _)", what ? what : "");
        break;
    case PARLEY_ERATE_LIMITED:
    case PARLEY_EBUSY:
        if (retry)
            errorf("%s, retry after %.1f s", err == PARLEY_EBUSY ? "server busy" : "rate limited",
                   retry / 1000.0);
        else
            errorf("%s", err == PARLEY_EBUSY ? "server busy" : "rate limited");
        break;
    case PARLEY_ECERT_CHANGED:
        url_hostport(url, hp, sizeof(hp));
        errorf("server certificate changed for %s (known_servers)", hp);
        break;
    case PARLEY_ENOACCOUNT:
        errorf("no account on this device (run: parley signup NAME)");
        break;
    case PARLEY_ECONNECT:
        errorf("cannot connect to %s", url);
        break;
    case PARLEY_ETIMEOUT:
        errorf("timed out talking to %s", url);
        break;
    case PARLEY_ETLS:
        errorf("TLS failure with %s (untrusted or bad certificate)", url);
        break;
    case PARLEY_ETEXT_TOO_LONG:
        errorf("text too long (at most %d characters)", PARLEY_TEXT_MAX_CHARS);
        break;
    case PARLEY_EBAD_UTF8:
        errorf("text is not valid UTF-8");
        break;
    case PARLEY_EEXIST:
        errorf("this device already has an account%s%s", what ? ": @" : "", what ? what : "");
        break;
    case PARLEY_EINVAL:
        errorf("invalid argument%s%s", what ? ": " : "", what ? what : "");
        break;
    case PARLEY_EUNTRUSTED_IDENTITY:
        errorf("identity key of %s%s changed; nothing sent. Compare safety numbers "
               "(parley verify %s%s), then accept with: parley verify %s%s --accept",
               at, what ? what : "", at, what ? what : "", at, what ? what : "");
        break;
    case PARLEY_ENOKEYS:
        errorf("%s%s has no device that can receive secret messages", at, what ? what : "");
        break;
    case PARLEY_EDEVICES_CHANGED:
        errorf("the devices of %s%s kept changing; try again", at, what ? what : "");
        break;
    case PARLEY_ECONFIG:
        errorf("a state file in this device's home directory is damaged (invalid configuration)");
        break;
    default:
        errorf("%s", parley_strerror(err));
        break;
    }
    return 1;
}

static void on_log(void *arg, int level, const char *line)
{
    const struct cli *cli = arg;
    if (level >= cli->log_level)
        fprintf(stderr, "parley: log: %s\n", line);
}

static int open_parley(struct cli *cli)
{
    struct parley_options o = {
        .home = cli->home,
        .server_url = cli->server,
        .log = on_log,
        .log_arg = cli,
    };
    int err = parley_open(&o, &cli->p);
    if (err == PARLEY_EINVAL && cli->server)
        return errorf("invalid server URL: %s (https://HOST:PORT, or http:// to a loopback host)",
                      cli->server),
               1;
    if (err)
        return fail(cli, err, NULL);
    return 0;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *val = argv[++*i];
    return 1;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    }
    return false;
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
}

static json_t *jstr(const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    return j ? j : json_null();
}

/* A deletion or a chat's auto-delete / timer change, as recv shows it. */
static void print_event(const struct cli *cli, const struct parley_msg *m)
{
    const char *kind = m->kind == PARLEY_MSG_DELETED ? "deleted" : "ttl";
    if (cli->json) {
        json_t *o = json_object();
        if (!o)
            return;
        json_object_set_new(o, "kind", json_string(kind));
        if (m->pts)
            json_object_set_new(o, "pts", json_integer((json_int_t)m->pts));
        if (m->chat[0])
            json_object_set_new(o, "chat", jstr(m->chat, strlen(m->chat)));
        if (m->kind == PARLEY_MSG_DELETED) {
            json_t *ids = json_array();
            for (size_t i = 0; ids && i < m->n_deleted; i++)
                json_array_append_new(ids, json_integer((json_int_t)m->deleted_ids[i]));
            json_object_set_new(o, "ids", ids);
        } else {
            json_object_set_new(o, "from", jstr(m->from, strlen(m->from)));
            json_object_set_new(o, "ttl_s", json_integer((json_int_t)m->ttl_s));
        }
        json_object_set_new(o, "secret", json_boolean(m->secret));
        if (m->identity_changed)
            json_object_set_new(o, "identity_changed", json_true());
        print_json(o);
    } else if (m->kind == PARLEY_MSG_DELETED) {
        printf("%s%zu message(s) deleted%s%s\n", m->secret ? "[secret] " : "", m->n_deleted,
               m->chat[0] ? " in " : "", m->chat);
    } else if (m->identity_changed) {
        printf("[secret] [identity changed!] %s asked to set the self-destruct timer in %s to "
               "%u s: not applied until you accept the new key (parley verify %s)\n",
               m->from, m->chat, m->ttl_s, m->chat);
    } else if (m->ttl_s) {
        printf("%s%s set %s in %s to %u s\n", m->secret ? "[secret] " : "", m->from,
               m->secret ? "the self-destruct timer" : "auto-delete", m->chat, m->ttl_s);
    } else {
        printf("%s%s turned %s off in %s\n", m->secret ? "[secret] " : "", m->from,
               m->secret ? "the self-destruct timer" : "auto-delete", m->chat);
    }
    fflush(stdout);
}

static void print_msg(const struct cli *cli, const struct parley_msg *m, bool with_duplicate)
{
    if (m->kind != PARLEY_MSG_TEXT) {
        print_event(cli, m);
        return;
    }
    if (cli->json) {
        json_t *o = json_object();
        if (!o)
            return;
        json_object_set_new(o, "id", json_integer((json_int_t)m->id));
        json_object_set_new(o, "pts", json_integer((json_int_t)m->pts));
        json_object_set_new(o, "chat", jstr(m->chat, strlen(m->chat)));
        json_object_set_new(o, "from", jstr(m->from, strlen(m->from)));
        json_object_set_new(o, "to", jstr(m->to, strlen(m->to)));
        json_object_set_new(o, "text", jstr(m->text, m->text_len));
        json_object_set_new(o, "date", json_integer((json_int_t)m->date));
        json_object_set_new(o, "outgoing", json_boolean(m->outgoing));
        json_object_set_new(o, "client_id", json_integer((json_int_t)m->client_id));
        if (with_duplicate)
            json_object_set_new(o, "duplicate", json_boolean(m->duplicate));
        json_object_set_new(o, "secret", json_boolean(m->secret));
        if (m->identity_changed)
            json_object_set_new(o, "identity_changed", json_true());
        if (m->expires)
            json_object_set_new(o, "expires", json_integer((json_int_t)m->expires));
        if (m->timer_s)
            json_object_set_new(o, "timer_s", json_integer((json_int_t)m->timer_s));
        print_json(o);
    } else {
        char when[32] = "?";
        struct tm tm;
        time_t t = (time_t)m->date;
        if (localtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        printf("[%s] %s%s%s -> %s: %.*s\n", when, m->secret ? "[secret] " : "",
               m->identity_changed ? "[identity changed!] " : "", m->from, m->to, (int)m->text_len,
               m->text);
    }
    fflush(stdout);
}

static int finish_output(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        errorf("cannot write output");
        return 1;
    }
    return 0;
}

/* Commands */

static const char usage_signup[] = "usage: parley signup NAME\n";
static const char usage_whoami[] = "usage: parley whoami\n";
static const char usage_send[] =
    "usage: parley send [--secret] [--client-id N] PEER TEXT\n"
    "  PEER is @username; TEXT '-' reads stdin (one trailing newline dropped).\n"
    "  --secret        end-to-end encrypted, in the secret chat with PEER\n"
    "                  (started on first use; see 'parley secret start')\n"
    "  --client-id N   idempotency key: resending with the same N sends once\n";
static const char usage_recv[] =
    "usage: parley recv [--follow] [--timeout S]\n"
    "  prints every message since the last recv on this device, once.\n"
    "  --timeout S   if nothing is new, wait up to S seconds for a message\n"
    "  --follow      keep printing live messages (until --timeout S, if given)\n";
static const char usage_secret[] =
    "usage: parley secret start PEER\n"
    "  starts a secret chat: fetches the keys of PEER's devices, checks their\n"
    "  signatures and starts an end-to-end encrypted session with each.\n"
    "  A key seen for the first time is trusted; a changed one blocks sending\n"
    "  until accepted with 'parley verify PEER --accept'.\n";
static const char usage_verify[] =
    "usage: parley verify PEER [--accept]\n"
    "  prints the safety number of the secret chat with PEER, in groups of 5.\n"
    "  Compare it with PEER's (parley verify @you on their device) in person or\n"
    "  over another channel: equal numbers mean nobody is in between.\n"
    "  --accept   trust PEER's current identity key (after a change), which\n"
    "             allows sending again\n";
static const char usage_ttl[] =
    "usage: parley ttl [--secret] PEER SECONDS\n"
    "  the chat with PEER, for both of you, from now on:\n"
    "  without --secret  auto-delete: the server deletes each new message SECONDS\n"
    "                    after it was sent, on every device (0: off; up to 31536000;\n"
    "                    1d = 86400, 1w = 604800, 1 month = 2592000)\n"
    "  --secret          self-destruct timer of the secret chat: a message is deleted\n"
    "                    on both devices SECONDS after its recipient read it (0: off;\n"
    "                    up to 604800; usual: 5, 10, 30, 60, 3600, 86400, 604800)\n";
static const char usage_history[] =
    "usage: parley history PEER [--limit N] [--before MSGID]\n"
    "  prints the chat with PEER, newest first.\n";

static int cmd_signup(struct cli *cli, int argc, char **argv)
{
    struct parley_account a;
    if (argc != 2)
        return usage_error(usage_signup, "signup takes one NAME", "");
    int err = parley_signup(cli->p, argv[1]);
    if (err == PARLEY_EEXIST && parley_whoami(cli->p, &a) == 0)
        return fail(cli, err, a.username);
    if (err)
        return fail(cli, err, argv[1]);
    if ((err = parley_whoami(cli->p, &a)))
        return fail(cli, err, NULL);
    if (cli->json) {
        json_t *o = json_object();
        json_object_set_new(o, "username", json_string(a.username));
        json_object_set_new(o, "user_id", json_integer((json_int_t)a.user_id));
        json_object_set_new(o, "device_id", json_integer((json_int_t)a.device_id));
        json_object_set_new(o, "server", json_string(a.server));
        print_json(o);
    } else {
        printf("signed up as @%s (user %llu, device %llu)\n", a.username,
               (unsigned long long)a.user_id, (unsigned long long)a.device_id);
    }
    return finish_output();
}

static int cmd_whoami(struct cli *cli, int argc, char **argv)
{
    struct parley_account a;
    (void)argv;
    if (argc != 1)
        return usage_error(usage_whoami, "whoami takes no arguments", "");
    int err = parley_whoami(cli->p, &a);
    if (err)
        return fail(cli, err, NULL);
    if (cli->json) {
        json_t *o = json_object();
        json_object_set_new(o, "username", json_string(a.username));
        json_object_set_new(o, "user_id", json_integer((json_int_t)a.user_id));
        json_object_set_new(o, "device_id", json_integer((json_int_t)a.device_id));
        json_object_set_new(o, "pts", json_integer((json_int_t)a.pts));
        json_object_set_new(o, "server", json_string(a.server));
        print_json(o);
    } else {
        printf("@%s (user %llu, device %llu) on %s, synced to pts %llu\n", a.username,
               (unsigned long long)a.user_id, (unsigned long long)a.device_id, a.server,
               (unsigned long long)a.pts);
    }
    return finish_output();
}

/* Reads all of stdin into a malloc'ed buffer, dropping one trailing newline. */
static int read_stdin(char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return PARLEY_ENOMEM;
    for (;;) {
        if (n == cap) {
            if (cap >= STDIN_TEXT_MAX) {
                free(buf);
                return PARLEY_ETEXT_TOO_LONG;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return PARLEY_ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0) {
            if (ferror(stdin)) {
                free(buf);
                return PARLEY_EIO;
            }
            break;
        }
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    *out = buf;
    *len = n;
    return 0;
}

/* fail() for the secret-chat calls, where some codes have a narrower
 * meaning than elsewhere (a bad signature is a peer's key bundle, not
 * this device's login). */
static int fail_secret(struct cli *cli, int err, const char *peer)
{
    const char *at = peer[0] == '@' ? "" : "@";
    if (err == PARLEY_EBAD_SIGNATURE)
        return errorf("a key bundle of %s%s has a bad signature; refused", at, peer), 1;
    if (err == PARLEY_ENOTFOUND)
        return errorf("no secret chat with %s%s yet (parley secret start %s%s)", at, peer, at,
                      peer),
               1;
    return fail(cli, err, peer);
}

/* Whether peer ("@name" or "name") is this device's own account. */
static bool is_self(struct cli *cli, const char *peer)
{
    struct parley_account a;
    if (parley_whoami(cli->p, &a) != 0)
        return false;
    return strcasecmp(peer[0] == '@' ? peer + 1 : peer, a.username) == 0;
}

static int cmd_send(struct cli *cli, int argc, char **argv)
{
    const char *pos[2];
    int npos = 0;
    uint64_t client_id = 0;
    bool opts_done = false, secret = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = opts_done ? 0 : opt_value(argc, argv, &i, "--client-id", &v);
        if (r < 0)
            return usage_error(usage_send, "--client-id needs a value", "");
        if (r == 0 && !opts_done && strcmp(argv[i], "--secret") == 0) {
            secret = true;
        } else if (r > 0) {
            if (!parse_u64(v, &client_id) || client_id == 0)
                return usage_error(usage_send, "bad --client-id: ", v);
        } else if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = true;
        } else if (!opts_done && argv[i][0] == '-' && argv[i][1] == '-') {
            return usage_error(usage_send, "unknown option: ", argv[i]);
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            return usage_error(usage_send, "too many arguments", "");
        }
    }
    if (npos != 2)
        return usage_error(usage_send, "send takes PEER and TEXT", "");
    char *text = NULL;
    size_t len;
    int err;
    if (strcmp(pos[1], "-") == 0) {
        if ((err = read_stdin(&text, &len)))
            return fail(cli, err, NULL);
    } else {
        len = strlen(pos[1]);
    }
    struct parley_msg m;
    if (secret)
        err = parley_send_secret(cli->p, pos[0], text ? text : pos[1], len, client_id, &m);
    else
        err = parley_send(cli->p, pos[0], text ? text : pos[1], len, client_id, &m);
    free(text);
    if (err == PARLEY_EINVAL && len == 0)
        return errorf("empty message"), 1;
    if (err == PARLEY_EINVAL && secret && is_self(cli, pos[0]))
        return errorf("a secret chat needs another account than your own"), 1;
    if (err)
        return secret ? fail_secret(cli, err, pos[0]) : fail(cli, err, pos[0]);
    print_msg(cli, &m, true);
    return finish_output();
}

static int on_recv_msg(void *arg, const struct parley_msg *m)
{
    const struct cli *cli = arg;
    print_msg(cli, m, false);
    return ferror(stdout) ? 1 : 0;
}

static int cmd_recv(struct cli *cli, int argc, char **argv)
{
    bool follow = false;
    int timeout_ms = -2;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r = opt_value(argc, argv, &i, "--timeout", &v);
        if (r < 0)
            return usage_error(usage_recv, "--timeout needs a value", "");
        if (r > 0) {
            char *end;
            errno = 0;
            double s = strtod(v, &end);
            if (errno || *end || end == v || !(s >= 0) || s > INT_MAX / 1000.0)
                return usage_error(usage_recv, "bad --timeout: ", v);
            timeout_ms = (int)(s * 1000.0);
        } else if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0) {
            follow = true;
        } else {
            return usage_error(usage_recv, "unexpected argument: ", argv[i]);
        }
    }
    if (timeout_ms == -2)
        timeout_ms = follow ? -1 : 0;
    int err = parley_recv(cli->p, timeout_ms, follow, on_recv_msg, cli);
    if (err)
        return fail(cli, err, NULL);
    return finish_output();
}

static int cmd_history(struct cli *cli, int argc, char **argv)
{
    const char *peer = NULL;
    uint64_t before = 0, limit = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if ((r = opt_value(argc, argv, &i, "--limit", &v))) {
            if (r < 0 || !parse_u64(v, &limit) || limit == 0 || limit > 1000)
                return usage_error(usage_history, "bad --limit (1-1000): ", r < 0 ? "" : v);
        } else if ((r = opt_value(argc, argv, &i, "--before", &v))) {
            if (r < 0 || !parse_u64(v, &before))
                return usage_error(usage_history, "bad --before: ", r < 0 ? "" : v);
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return usage_error(usage_history, "unknown option: ", argv[i]);
        } else if (!peer) {
            peer = argv[i];
        } else {
            return usage_error(usage_history, "too many arguments", "");
        }
    }
    if (!peer)
        return usage_error(usage_history, "history takes PEER", "");
    int err = parley_history(cli->p, peer, before, (unsigned)limit, on_recv_msg, cli);
    if (err)
        return fail(cli, err, peer);
    return finish_output();
}

static int cmd_secret(struct cli *cli, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "start") != 0)
        return usage_error(usage_secret, "secret takes the subcommand start", "");
    if (argc != 3)
        return usage_error(usage_secret, "secret start takes one PEER", "");
    const char *peer = argv[2];
    int err = parley_secret_start(cli->p, peer);
    if (err == PARLEY_EINVAL && is_self(cli, peer))
        return errorf("a secret chat needs another account than your own"), 1;
    if (err && err != PARLEY_EUNTRUSTED_IDENTITY)
        return fail_secret(cli, err, peer);
    const char *at = peer[0] == '@' ? "" : "@";
    bool changed = err == PARLEY_EUNTRUSTED_IDENTITY;
    if (cli->json) {
        json_t *o = json_object();
        json_object_set_new(o, "peer", json_string(peer));
        json_object_set_new(o, "started", json_true());
        json_object_set_new(o, "identity_changed", json_boolean(changed));
        print_json(o);
    } else {
        printf("secret chat with %s%s started\n", at, peer);
    }
    if (changed) {
        /* The sessions exist, but the user must know sending is blocked. */
        errorf("WARNING: the identity key of %s%s changed; sending is blocked until you compare "
               "safety numbers (parley verify %s%s) and accept (parley verify %s%s --accept)",
               at, peer, at, peer, at, peer);
        finish_output();
        return 1;
    }
    return finish_output();
}

static int cmd_ttl(struct cli *cli, int argc, char **argv)
{
    const char *pos[2];
    int npos = 0;
    bool secret = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--secret") == 0)
            secret = true;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return usage_error(usage_ttl, "unknown option: ", argv[i]);
        else if (npos < 2)
            pos[npos++] = argv[i];
        else
            return usage_error(usage_ttl, "too many arguments", "");
    }
    if (npos != 2)
        return usage_error(usage_ttl, "ttl takes PEER SECONDS", "");
    uint64_t seconds;
    const uint64_t max = secret ? 604800 : 31536000;
    if (!parse_u64(pos[1], &seconds) || seconds > max)
        return usage_error(usage_ttl, "bad SECONDS: ", pos[1]);
    const char *peer = pos[0];
    int err = secret ? parley_secret_timer(cli->p, peer, (uint32_t)seconds)
                     : parley_set_ttl(cli->p, peer, (uint32_t)seconds);
    if (err)
        return secret ? fail_secret(cli, err, peer) : fail(cli, err, peer);
    const char *at = peer[0] == '@' ? "" : "@";
    if (cli->json) {
        json_t *o = json_object();
        json_object_set_new(o, "chat", json_string(peer));
        json_object_set_new(o, "ttl_s", json_integer((json_int_t)seconds));
        json_object_set_new(o, "secret", json_boolean(secret));
        print_json(o);
    } else if (seconds) {
        printf("%s in the %schat with %s%s: %llu s\n",
               secret ? "self-destruct timer" : "auto-delete", secret ? "secret " : "", at, peer,
               (unsigned long long)seconds);
    } else {
        printf("%s off in the %schat with %s%s\n", secret ? "self-destruct timer" : "auto-delete",
               secret ? "secret " : "", at, peer);
    }
    return finish_output();
}

static int cmd_verify(struct cli *cli, int argc, char **argv)
{
    const char *peer = NULL;
    bool accept = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--accept") == 0)
            accept = true;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return usage_error(usage_verify, "unknown option: ", argv[i]);
        else if (!peer)
            peer = argv[i];
        else
            return usage_error(usage_verify, "too many arguments", "");
    }
    if (!peer)
        return usage_error(usage_verify, "verify takes PEER", "");
    struct parley_safety s, after;
    int err = parley_verify(cli->p, peer, &s);
    bool was_changed = !err && s.changed;
    /* Accepting takes the device shown; another changed device, if any, is
     * shown next (and stays blocked): say so rather than claim all is well. */
    bool more_changed = false;
    if (!err && accept && (err = parley_verify_accept(cli->p, peer)) == 0 &&
        (err = parley_verify(cli->p, peer, &after)) == 0) {
        more_changed = after.changed;
        s.changed = false;
    }
    if (err)
        return fail_secret(cli, err, peer);
    const char *at = peer[0] == '@' ? "" : "@";
    if (cli->json) {
        json_t *o = json_object();
        json_object_set_new(o, "peer", json_string(peer));
        json_object_set_new(o, "safety_number", json_string(s.number));
        json_object_set_new(o, "device_id", json_integer((json_int_t)s.device_id));
        json_object_set_new(o, "changed", json_boolean(s.changed));
        if (accept) {
            json_object_set_new(o, "accepted", json_boolean(was_changed));
            json_object_set_new(o, "more_changed", json_boolean(more_changed));
        }
        print_json(o);
    } else {
        if (s.changed)
            printf("WARNING: the identity key of %s%s changed since you last accepted it.\n"
                   "Sending to %s%s is blocked. Compare this safety number with %s%s over\n"
                   "another channel; if it matches, run: parley verify %s%s --accept\n",
                   at, peer, at, peer, at, peer, at, peer);
        printf("safety number with %s%s:\n%s\n", at, peer, s.number);
        if (accept && was_changed)
            printf("accepted the new identity key of %s%s (device %llu)\n", at, peer,
                   (unsigned long long)s.device_id);
        else if (accept)
            printf("nothing to accept: the identity key of %s%s is unchanged\n", at, peer);
        if (more_changed)
            printf("WARNING: another device of %s%s has a changed identity key: run parley "
                   "verify %s%s again\n",
                   at, peer, at, peer);
    }
    return finish_output();
}

static const struct command commands[] = {
    {"signup", usage_signup, cmd_signup},
    {"whoami", usage_whoami, cmd_whoami},
    {"send", usage_send, cmd_send},
    {"recv", usage_recv, cmd_recv},
    {"history", usage_history, cmd_history},
    {"secret", usage_secret, cmd_secret},
    {"verify", usage_verify, cmd_verify},
    {"ttl", usage_ttl, cmd_ttl},
};

static int log_level_from_env(void)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    const char *s = getenv("PARLEY_LOG");
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return 4;
}

/* Takes a global option (--json, --server URL, --home DIR) at argv[*i] into
 * cli, advancing *i past its value. Returns 1 if it was one, 0 if not, or
 * the exit status of a usage error. */
static int global_option(struct cli *cli, int argc, char **argv, int *i)
{
    const char *v;
    int r;
    if (strcmp(argv[*i], "--json") == 0) {
        cli->json = true;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--server", &v))) {
        if (r < 0)
            return -usage_error(usage_main, "--server needs a URL", "");
        cli->server = v;
        return 1;
    }
    if ((r = opt_value(argc, argv, i, "--home", &v))) {
        if (r < 0)
            return -usage_error(usage_main, "--home needs a directory", "");
        cli->home = v;
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct cli cli = {.log_level = log_level_from_env()};
    int i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_main, stdout);
            return 0;
        }
        int r = global_option(&cli, argc, argv, &i);
        if (r < 0)
            return -r;
        if (r == 0)
            return usage_error(usage_main, "unknown option: ", argv[i]);
    }
    if (i >= argc)
        return usage_error(usage_main, "no command given", "");
    const struct command *cmd = NULL;
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(argv[i], commands[k].name) == 0)
            cmd = &commands[k];
    if (!cmd)
        return usage_error(usage_main, "unknown command: ", argv[i]);
    /* Global options may also follow the command ("recv --json"), up to a
     * "--"; they are taken out of what the command sees. */
    int cargc = 0;
    char **cargv = argv + i; /* compacted in place */
    bool rest = false;
    for (int k = i; k < argc; k++) {
        if (k > i && !rest) {
            if (strcmp(argv[k], "--") == 0) {
                rest = true;
            } else {
                int r = global_option(&cli, argc, argv, &k);
                if (r < 0)
                    return -r;
                if (r > 0)
                    continue;
            }
        }
        cargv[cargc++] = argv[k];
    }
    argc = i + cargc;
    if (wants_help(argc - i, argv + i)) {
        fputs(cmd->usage, stdout);
        return 0;
    }
    int rc = open_parley(&cli);
    if (rc == 0)
        rc = cmd->run(&cli, argc - i, argv + i);
    parley_close(cli.p);
    return rc;
}
