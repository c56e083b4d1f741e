/* SPDX-License-Identifier: MIT */
/* parley-bench: the load generator. Parses the command line, refuses any
 * server that is not on loopback, runs one scenario on its own libuv loop
 * and prints a table or one JSON object. Exit status: 0 done, 1 the run
 * could not be carried out, 2 bad usage or a refused address. */
#include "bench.h"
#include "common/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "common/banned.h"

#define FD_RESERVE 64 /* descriptors the process needs besides connections */

static void usage(FILE *out)
{
    fputs("usage: parley-bench --server URL [--server-pid PID] [--config NAME] [--json]\n"
          "                    SCENARIO [options]\n"
          "\n"
          "URL is http://HOST:PORT or https://HOST:PORT with HOST in 127.0.0.0/8, [::1] or\n"
          "localhost: the bench refuses any other address.\n"
          "\n"
          "scenarios and their options:\n"
          "  signup --rate R | --max [--concurrency C] --duration S\n"
          "  msgs   --pairs P --window W --size B --duration S [--rate R] [--drain-ms MS]\n"
          "  secret --pairs P --window W --size B --duration S [--rate R] [--drain-ms MS]\n"
          "         (msgs over secret envelopes, each acked)\n"
          "  idle   --conns N --hold S [--accounts K] [--ping-interval S] [--tls]\n"
          "  surge  --rate R --signup-rate S --duration D [--pairs P] [--window W] [--size B]\n"
          "common: --timeout-ms MS (a sign-up, login or request; default 10000)\n",
          out);
}

PL_PRINTF(1, 2) static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("parley-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return PARLEY_EINVAL;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned long lo, unsigned long hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return PARLEY_EINVAL;
    *out = (unsigned)v;
    return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return false;
}

/* http[s]://HOST[:PORT][/] with HOST an IP literal or localhost. */
static int parse_server(const char *url, struct bconn_target *t, bool *tls)
{
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "ws://", 5) == 0) {
        *tls = false;
        p = strstr(url, "//") + 2;
    } else if (strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "wss://", 6) == 0) {
        *tls = true;
        p = strstr(url, "//") + 2;
    } else {
        return bad("--server %s: want http://HOST:PORT or https://HOST:PORT", url);
    }
    char host[64];
    const char *rest;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close || (size_t)(close - p - 1) >= sizeof(host))
            return bad("--server %s: bad IPv6 address", url);
        memcpy(host, p + 1, (size_t)(close - p - 1));
        host[close - p - 1] = '\0';
        rest = close + 1;
    } else {
        size_t len = strcspn(p, ":/");
        if (len == 0 || len >= sizeof(host))
            return bad("--server %s: no host", url);
        memcpy(host, p, len);
        host[len] = '\0';
        rest = p + len;
    }
    unsigned port = 8443;
    if (*rest == ':') {
        char num[8];
        size_t len = strcspn(rest + 1, "/");
        if (len == 0 || len >= sizeof(num))
            return bad("--server %s: bad port", url);
        memcpy(num, rest + 1, len);
        num[len] = '\0';
        if (parse_uint(num, 1, 65535, &port))
            return bad("--server %s: bad port", url);
        rest += 1 + len;
    }
    if (*rest && strcmp(rest, "/") != 0)
        return bad("--server %s: a server URL has no path", url);
    memset(&t->addr, 0, sizeof(t->addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&t->addr;
    if (strcasecmp(host, "localhost") == 0) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
    } else {
        return bad("--server %s: HOST must be an IP address or localhost", url);
    }
    if (!is_loopback(&t->addr))
        return bad("--server %s: refused: parley-bench only loads a server on loopback "
                   "(127.0.0.0/8 or ::1)",
                   url);
    if (t->addr.ss_family == AF_INET6)
        snprintf(t->host, sizeof(t->host), "[%s]:%u", host, port);
    else
        snprintf(t->host, sizeof(t->host), "%s:%u", host, port);
    return 0;
}

enum {
    OPT_SERVER = 256,
    OPT_SERVER_PID,
    OPT_CONFIG,
    OPT_JSON,
    OPT_RATE,
    OPT_MAX,
    OPT_CONC,
    OPT_DURATION,
    OPT_PAIRS,
    OPT_WINDOW,
    OPT_SIZE,
    OPT_SIGNUP_RATE,
    OPT_CONNS,
    OPT_HOLD,
    OPT_TLS,
    OPT_ACCOUNTS,
    OPT_PING,
    OPT_TIMEOUT,
    OPT_DRAIN,
    OPT_HELP,
};

static const struct option long_opts[] = {
    {"server", required_argument, NULL, OPT_SERVER},
    {"server-pid", required_argument, NULL, OPT_SERVER_PID},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"json", no_argument, NULL, OPT_JSON},
    {"rate", required_argument, NULL, OPT_RATE},
    {"max", no_argument, NULL, OPT_MAX},
    {"concurrency", required_argument, NULL, OPT_CONC},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"pairs", required_argument, NULL, OPT_PAIRS},
    {"window", required_argument, NULL, OPT_WINDOW},
    {"size", required_argument, NULL, OPT_SIZE},
    {"signup-rate", required_argument, NULL, OPT_SIGNUP_RATE},
    {"conns", required_argument, NULL, OPT_CONNS},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"tls", no_argument, NULL, OPT_TLS},
    {"accounts", required_argument, NULL, OPT_ACCOUNTS},
    {"ping-interval", required_argument, NULL, OPT_PING},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"drain-ms", required_argument, NULL, OPT_DRAIN},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

/* Parses argv into o; returns 0, or 2 after saying why. */
static int parse_args(int argc, char **argv, struct bench_opts *o, bool *rate_set)
{
    *o = (struct bench_opts){
        .concurrency = 64,
        .duration_s = 10,
        .pairs = 0,
        .window = 0,
        .size = 100,
        .conns = 1000,
        .hold_s = 10,
        .ping_interval_s = 5,
        .timeout_ms = 10000,
        .drain_ms = 3000,
    };
    *rate_set = false;
    unsigned pid = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        const char *a = optarg;
        int rc = 0;
        switch (c) {
        case OPT_SERVER:
            o->server_url = a;
            break;
        case OPT_SERVER_PID:
            rc = parse_uint(a, 1, 4194304, &pid);
            o->server_pid = (int)pid;
            break;
        case OPT_CONFIG:
            o->config_name = a;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_RATE:
            rc = parse_double(a, 0.001, 1e6, &o->rate);
            *rate_set = true;
            break;
        case OPT_MAX:
            o->max = true;
            break;
        case OPT_CONC:
            rc = parse_uint(a, 1, 100000, &o->concurrency);
            break;
        case OPT_DURATION:
            rc = parse_double(a, 0.1, BENCH_MAX_DURATION_S, &o->duration_s);
            break;
        case OPT_PAIRS:
            rc = parse_uint(a, 1, 9000, &o->pairs);
            break;
        case OPT_WINDOW:
            rc = parse_uint(a, 1, 100000, &o->window);
            break;
        case OPT_SIZE:
            rc = parse_uint(a, 1, 4096, &o->size);
            break;
        case OPT_SIGNUP_RATE:
            rc = parse_double(a, 0.001, 1e5, &o->signup_rate);
            break;
        case OPT_CONNS:
            rc = parse_uint(a, 1, 1000000, &o->conns);
            break;
        case OPT_HOLD:
            rc = parse_double(a, 0.1, BENCH_MAX_DURATION_S, &o->hold_s);
            break;
        case OPT_TLS:
            o->tls = true;
            break;
        case OPT_ACCOUNTS:
            rc = parse_uint(a, 1, 100000, &o->accounts);
            break;
        case OPT_PING:
            rc = parse_double(a, 0.05, 3600, &o->ping_interval_s);
            break;
        case OPT_TIMEOUT:
            rc = parse_uint(a, 10, 600000, &o->timeout_ms);
            break;
        case OPT_DRAIN:
            rc = parse_uint(a, 0, 600000, &o->drain_ms);
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return bad("unknown option or missing value: %s", argv[optind - 1]);
        }
        if (rc)
            return bad("bad value for %s", argv[optind - 1]);
    }
    if (optind != argc - 1) {
        usage(stderr);
        return bad("%s", optind >= argc ? "no scenario given" : "one scenario, please");
    }
    o->scenario = argv[optind];
    if (!o->server_url)
        return bad("%s", "--server URL is required");
    return 0;
}

/* Checks the options that matter to the scenario and fills its defaults. */
static int check_scenario(struct bench_opts *o, bool rate_set, uint64_t fd_limit)
{
    if (strcmp(o->scenario, "signup") == 0) {
        if (rate_set == o->max)
            return bad("%s", "signup: give exactly one of --rate R and --max");
    } else if (strcmp(o->scenario, "msgs") == 0 || strcmp(o->scenario, "secret") == 0) {
        if (!o->pairs)
            o->pairs = 10;
        if (!o->window)
            o->window = rate_set ? 64 : 1;
    } else if (strcmp(o->scenario, "surge") == 0) {
        if (!rate_set || o->signup_rate <= 0)
            return bad("%s", "surge: --rate R and --signup-rate S are required");
        if (!o->pairs)
            o->pairs = 100;
        if (!o->window)
            o->window = 64;
    } else if (strcmp(o->scenario, "idle") == 0) {
        if (o->accounts > o->conns)
            o->accounts = o->conns;
    } else {
        return bad("unknown scenario %s (signup, msgs, secret, idle, surge)", o->scenario);
    }
    uint64_t need = strcmp(o->scenario, "idle") == 0 ? o->conns : (uint64_t)o->pairs * 2;
    if (need + FD_RESERVE > fd_limit) {
        fprintf(stderr,
                "parley-bench: %llu connections need %llu open files, above this process's "
                "limit of %llu (the hard limit; it cannot be raised here): use at most %llu\n",
                (unsigned long long)need, (unsigned long long)(need + FD_RESERVE),
                (unsigned long long)fd_limit, (unsigned long long)(fd_limit - FD_RESERVE));
        return 2;
    }
    return 0;
}

/* Raises the open-file soft limit to the hard limit; returns the limit. */
static uint64_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) != 0)
            return 1024;
    }
    return rl.rlim_cur == RLIM_INFINITY ? (uint64_t)1 << 20 : (uint64_t)rl.rlim_cur;
}

static void on_sigint(uv_signal_t *h, int sig)
{
    (void)sig;
    struct bench *b = h->data;
    if (b->stopping)
        exit(130);
    b->stopping = true;
    fputs("parley-bench: interrupted: ending the window (again to quit at once)\n", stderr);
}

static json_t *result_json(const struct bench *b, const struct bench_result *r, json_t *extra)
{
    json_t *o = json_object();
    json_object_set_new(o, "scenario", json_string(b->opt.scenario));
    json_object_set_new(o, "duration_s", json_real(r->duration_s));
    json_object_set_new(o, "sent", json_integer((json_int_t)r->sent));
    json_object_set_new(o, "delivered", json_integer((json_int_t)r->delivered));
    json_object_set_new(o, "lost", json_integer((json_int_t)r->lost));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)r->duplicates));
    json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
    json_object_set_new(o, "per_s", json_real(r->per_s));
    if (r->latency && r->latency->count) {
        json_object_set_new(o, "p50_ms", json_real(hist_percentile(r->latency, 0.5) / 1000.0));
        json_object_set_new(o, "p99_ms", json_real(hist_percentile(r->latency, 0.99) / 1000.0));
        json_object_set_new(o, "max_ms", json_real(r->latency->max_us / 1000.0));
    } else {
        json_object_set_new(o, "p50_ms", json_null());
        json_object_set_new(o, "p99_ms", json_null());
        json_object_set_new(o, "max_ms", json_null());
    }
    if (r->before.ok && r->after.ok) {
        json_object_set_new(o, "server_cpu_s", json_real(r->after.cpu_s - r->before.cpu_s));
        json_object_set_new(o, "server_rss_kib", json_integer((json_int_t)r->after.rss_kib));
        json_object_set_new(o, "server_rss_peak_kib", json_integer((json_int_t)r->after.hwm_kib));
    } else {
        json_object_set_new(o, "server_cpu_s", json_null());
        json_object_set_new(o, "server_rss_kib", json_null());
        json_object_set_new(o, "server_rss_peak_kib", json_null());
    }
    json_object_set_new(o, "config",
                        b->opt.config_name ? json_string(b->opt.config_name) : json_null());
    json_object_update(o, extra);
    return o;
}

static void print_value(const char *key, json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *sub;
        if (json_object_size(v) == 0)
            printf("  %-32s -\n", key);
        json_object_foreach(v, k, sub)
        {
            char name[128];
            snprintf(name, sizeof(name), "%s.%s", key, k);
            print_value(name, sub);
        }
        return;
    }
    if (json_is_integer(v))
        printf("  %-32s %lld\n", key, (long long)json_integer_value(v));
    else if (json_is_real(v))
        printf("  %-32s %.3f\n", key, json_real_value(v));
    else if (json_is_string(v))
        printf("  %-32s %s\n", key, json_string_value(v));
    else if (json_is_boolean(v))
        printf("  %-32s %s\n", key, json_is_true(v) ? "yes" : "no");
    else
        printf("  %-32s -\n", key);
}

static void print_table(json_t *o)
{
    const char *k;
    json_t *v;
    printf("parley-bench %s\n", json_string_value(json_object_get(o, "scenario")));
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "scenario") != 0)
            print_value(k, v);
    }
}

int main(int argc, char **argv)
{
    static struct bench b;
    bool rate_set;
    int rc = parse_args(argc, argv, &b.opt, &rate_set);
    if (rc)
        return rc;
    bool tls = false;
    rc = parse_server(b.opt.server_url, &b.target, &tls);
    if (rc)
        return rc;
    if (b.opt.tls && !tls)
        return bad("%s", "--tls needs an https:// server URL (a TLS server)");
    b.fd_limit = raise_fd_limit();
    rc = check_scenario(&b.opt, rate_set, b.fd_limit);
    if (rc)
        return rc;
    if (sodium_init() < 0) {
        fputs("parley-bench: libsodium failed to initialise\n", stderr);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    /* Unique names per run: "b" and 8 random base-36 characters. */
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    b.prefix[0] = 'b';
    for (int i = 1; i <= 8; i++)
        b.prefix[i] = digits[randombytes_uniform(36)];
    b.prefix[9] = '\0';
    uint64_t seed;
    randombytes_buf(&seed, sizeof(seed));
    bconn_seed(seed);
    b.target.max_frame = 64u << 20;
    if (tls) {
        b.target.ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!b.target.ssl_ctx) {
            fputs("parley-bench: cannot create a TLS context\n", stderr);
            return 1;
        }
        /* A benchmark on loopback: the server's self-signed certificate is
         * accepted without verification. */
        SSL_CTX_set_verify(b.target.ssl_ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_min_proto_version(b.target.ssl_ctx, TLS1_2_VERSION);
    }
    if (uv_loop_init(&b.loop) != 0) {
        fputs("parley-bench: cannot create the event loop\n", stderr);
        SSL_CTX_free(b.target.ssl_ctx);
        return 1;
    }
    uv_timer_init(&b.loop, &b.tick);
    uv_signal_t sigint;
    uv_signal_init(&b.loop, &sigint);
    sigint.data = &b;
    uv_signal_start(&sigint, on_sigint, SIGINT);
    uv_unref((uv_handle_t *)&sigint);

    struct bench_result r;
    memset(&r, 0, sizeof(r));
    json_t *extra = json_object();
    const char *s = b.opt.scenario;
    if (strcmp(s, "signup") == 0)
        rc = scenario_signup(&b, &r, extra);
    else if (strcmp(s, "msgs") == 0)
        rc = scenario_msgs(&b, &r, extra);
    else if (strcmp(s, "secret") == 0)
        rc = scenario_secret(&b, &r, extra);
    else if (strcmp(s, "idle") == 0)
        rc = scenario_idle(&b, &r, extra);
    else
        rc = scenario_surge(&b, &r, extra);
    if (rc == 0) {
        json_t *out = result_json(&b, &r, extra);
        if (b.opt.json) {
            char *text = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
            if (text)
                puts(text);
            free(text);
        } else {
            print_table(out);
        }
        json_decref(out);
    }
    json_decref(extra);
    scenario_free(&b);

    uv_close((uv_handle_t *)&b.tick, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&b.loop) != 0)
        fputs("parley-bench: handles left open at exit\n", stderr);
    bconn_cleanup();
    SSL_CTX_free(b.target.ssl_ctx);
    return rc;
}
