/* SPDX-License-Identifier: MIT */
/* Configuration parsing and validation. Values are checked as they are read
 * (type and range) and then as a whole (config_validate). */
#include "config.h"
#include "common/err.h"
#include "common/log.h"
#include "proto/frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/banned.h"

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 8443;
    snprintf(cfg->data_dir, sizeof(cfg->data_dir), "./var");
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->front_loop = true;
    cfg->max_frame_bytes = FRAME_MAX_DEFAULT;
    cfg->max_text_chars = 4096;
    cfg->send_queue_bytes = 4u << 20;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_ping_s = 30;
    cfg->ip_rate = 200;
    cfg->ip_burst = 400;
    cfg->account_rate = 50;
    cfg->account_burst = 200;
    cfg->signup_ip_rate = 0.2;
    cfg->signup_ip_burst = 5;
    cfg->auth_queue_max = 1024;
    cfg->auth_per_turn = 32;
    cfg->auth_inflight_max = 64;
    cfg->auth_max_wait_ms = 1000;
    cfg->retry_after_ms = 1000;
    cfg->auth_turn_ms = 5;
    cfg->store_max_batch = 1024;
    cfg->store_max_queue = 65536;
    cfg->store_user_cache = 1u << 20;
    cfg->store_checkpoint_mib = 128;
    cfg->envelope_days = 30;
    cfg->envelopes_per_device = 10000;
}

bool config_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

int config_set_listen(struct config *cfg, const char *hostport)
{
    const char *colon, *host = hostport;
    size_t hlen;
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (!close || close[1] != ':')
            return PARLEY_EINVAL;
        host = hostport + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (!colon)
            return PARLEY_EINVAL;
        hlen = (size_t)(colon - hostport);
    }
    if (hlen == 0 || hlen >= sizeof(cfg->listen_host))
        return PARLEY_EINVAL;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port > 65535)
        return PARLEY_EINVAL;
    char h[sizeof(cfg->listen_host)];
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(h, "localhost") != 0 && inet_pton(AF_INET, h, &a4) != 1 &&
        inet_pton(AF_INET6, h, &a6) != 1)
        return PARLEY_EINVAL;
    memcpy(cfg->listen_host, h, hlen + 1);
    cfg->listen_port = (unsigned)port;
    return 0;
}

/* Parsing state: inih calls the reader once per line, so counting reader
 * calls gives the line each handler call is about. */
struct parse {
    struct config *cfg;
    const char *path;
    FILE *in;
    FILE *err;
    int line;
    int problems;
};

static char *read_line(char *str, int num, void *stream)
{
    struct parse *p = stream;
    char *r = fgets(str, num, p->in);
    if (r)
        p->line++;
    return r;
}

PL_PRINTF(4, 5)
static void problem(struct parse *p, const char *section, const char *key, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (p->err)
        fprintf(p->err, "%s:%d: [%s] %s: %s\n", p->path, p->line, section, key, why);
    p->problems++;
}

static bool parse_bool(const char *v, bool *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
        *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
        *out = false;
    else
        return false;
    return true;
}

static bool parse_uint(const char *v, unsigned long long lo, unsigned long long hi,
                       unsigned long long *out)
{
    char *end;
    if (*v == '-' || *v == '\0')
        return false;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static bool parse_double(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static bool set_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return false;
    memcpy(dst, v, n + 1);
    return true;
}

/* One numeric key: its place in struct config, range and kind. */
enum kind { K_UINT, K_SIZE, K_DOUBLE };
struct numkey {
    const char *section, *name;
    enum kind kind;
    size_t off;
    double lo, hi;
};

#define NK(sec, key, kind, field, lo, hi) {sec, key, kind, offsetof(struct config, field), lo, hi}
static const struct numkey numkeys[] = {
    NK("server", "threads", K_UINT, threads, 0, 256),
    NK("limits", "max_frame_bytes", K_SIZE, max_frame_bytes, 1024, 64 << 20),
    NK("limits", "max_text_chars", K_UINT, max_text_chars, 1, 4096),
    NK("limits", "send_queue_bytes", K_SIZE, send_queue_bytes, 64 << 10, 1u << 30),
    NK("limits", "handshake_timeout_ms", K_UINT, handshake_timeout_ms, 100, 600000),
    NK("limits", "idle_ping_s", K_UINT, idle_ping_s, 0, 86400),
    NK("ratelimit", "ip_rate", K_DOUBLE, ip_rate, 0.001, 1e9),
    NK("ratelimit", "ip_burst", K_DOUBLE, ip_burst, 1, 1e9),
    NK("ratelimit", "account_rate", K_DOUBLE, account_rate, 0.001, 1e9),
    NK("ratelimit", "account_burst", K_DOUBLE, account_burst, 1, 1e9),
    NK("ratelimit", "signup_ip_rate", K_DOUBLE, signup_ip_rate, 0.0001, 1e9),
    NK("ratelimit", "signup_ip_burst", K_DOUBLE, signup_ip_burst, 1, 1e9),
    NK("admission", "auth_queue_max", K_UINT, auth_queue_max, 1, 1000000),
    NK("admission", "auth_per_turn", K_UINT, auth_per_turn, 1, 100000),
    NK("admission", "auth_inflight_max", K_UINT, auth_inflight_max, 1, 1000000),
    NK("admission", "max_wait_ms", K_UINT, auth_max_wait_ms, 0, 3600000),
    NK("admission", "retry_after_ms", K_UINT, retry_after_ms, 1, 3600000),
    NK("admission", "turn_ms", K_UINT, auth_turn_ms, 0, 1000),
    NK("store", "max_batch", K_UINT, store_max_batch, 1, 100000),
    NK("store", "max_queue", K_UINT, store_max_queue, 1, 10000000),
    NK("store", "user_cache", K_UINT, store_user_cache, 1, 100000000),
    NK("store", "checkpoint_mib", K_UINT, store_checkpoint_mib, 1, 65536),
    NK("secret", "envelope_days", K_UINT, envelope_days, 1, 3650),
    NK("secret", "max_queued_per_device", K_UINT, envelopes_per_device, 1, 10000000),
};

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *p = user;
    struct config *c = p->cfg;

    for (size_t i = 0; i < PL_ARRAY_LEN(numkeys); i++) {
        const struct numkey *k = &numkeys[i];
        if (strcmp(section, k->section) || strcmp(name, k->name))
            continue;
        char *field = (char *)c + k->off;
        if (k->kind == K_DOUBLE) {
            double d;
            if (!parse_double(value, k->lo, k->hi, &d))
                problem(p, section, name, "must be a number from %g to %g", k->lo, k->hi);
            else
                memcpy(field, &d, sizeof(d));
        } else {
            unsigned long long x;
            if (!parse_uint(value, (unsigned long long)k->lo, (unsigned long long)k->hi, &x)) {
                problem(p, section, name, "must be an integer from %.0f to %.0f", k->lo, k->hi);
            } else if (k->kind == K_UINT) {
                unsigned u = (unsigned)x;
                memcpy(field, &u, sizeof(u));
            } else {
                size_t z = (size_t)x;
                memcpy(field, &z, sizeof(z));
            }
        }
        return 1;
    }

    if (!strcmp(section, "server")) {
        if (!strcmp(name, "listen")) {
            if (config_set_listen(c, value))
                problem(p, section, name, "must be HOST:PORT with an IP address or localhost");
        } else if (!strcmp(name, "data_dir")) {
            if (!*value || !set_str(c->data_dir, sizeof(c->data_dir), value))
                problem(p, section, name, "must be a path of 1 to %zu bytes",
                        sizeof(c->data_dir) - 1);
        } else if (!strcmp(name, "plaintext")) {
            if (!parse_bool(value, &c->plaintext))
                problem(p, section, name, "must be true or false");
        } else if (!strcmp(name, "front_loop")) {
            if (!parse_bool(value, &c->front_loop))
                problem(p, section, name, "must be true or false");
        } else if (!strcmp(name, "tls_cert")) {
            if (!set_str(c->tls_cert, sizeof(c->tls_cert), value))
                problem(p, section, name, "path too long");
        } else if (!strcmp(name, "tls_key")) {
            if (!set_str(c->tls_key, sizeof(c->tls_key), value))
                problem(p, section, name, "path too long");
        } else if (!strcmp(name, "log_level")) {
            if (log_level_parse(value, &c->log_level))
                problem(p, section, name, "must be debug, info, warn or error");
        } else {
            problem(p, section, name, "unknown key");
        }
    } else if (!strcmp(section, "store") && !strcmp(name, "path")) {
        if (!set_str(c->db_path, sizeof(c->db_path), value))
            problem(p, section, name, "path too long");
    } else {
        problem(p, section, name, "unknown key");
    }
    return 1;
}

int config_load(struct config *cfg, const char *path, FILE *err)
{
    struct parse p = {.cfg = cfg, .path = path, .err = err};
    p.in = fopen(path, "r");
    if (!p.in) {
        if (err)
            fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
        return PARLEY_ECONFIG;
    }
    int rc = ini_parse_stream(read_line, &p, on_key, &p);
    fclose(p.in);
    if (rc > 0) {
        if (err)
            fprintf(err, "%s:%d: syntax error\n", path, rc);
        p.problems++;
    } else if (rc < 0) {
        if (err)
            fprintf(err, "%s: cannot read\n", path);
        p.problems++;
    }
    return p.problems ? PARLEY_ECONFIG : 0;
}

int config_validate(const struct config *cfg, FILE *err)
{
    int problems = 0;
#define BAD(...)                                                                                   \
    do {                                                                                           \
        if (err)                                                                                   \
            fprintf(err, __VA_ARGS__);                                                             \
        problems++;                                                                                \
    } while (0)
    if (cfg->plaintext && !config_is_loopback(cfg->listen_host))
        BAD("[server] plaintext: refused on %s, allowed only on a loopback address\n",
            cfg->listen_host);
    if (!!cfg->tls_cert[0] != !!cfg->tls_key[0])
        BAD("[server] tls_cert, tls_key: set both or neither\n");
    if (cfg->tls_cert[0] && access(cfg->tls_cert, R_OK) != 0)
        BAD("[server] tls_cert: cannot read %s: %s\n", cfg->tls_cert, strerror(errno));
    if (cfg->tls_key[0] && access(cfg->tls_key, R_OK) != 0)
        BAD("[server] tls_key: cannot read %s: %s\n", cfg->tls_key, strerror(errno));
    if (cfg->ip_burst < 1 || cfg->account_burst < 1 || cfg->signup_ip_burst < 1)
        BAD("[ratelimit] bursts must be at least 1\n");
    if (cfg->send_queue_bytes < cfg->max_frame_bytes)
        BAD("[limits] send_queue_bytes must be at least max_frame_bytes\n");
#undef BAD
    return problems ? PARLEY_ECONFIG : 0;
}
