/* SPDX-License-Identifier: MIT */
/* Prometheus text exposition of parleyd's counters, the store's commit
 * figures and the network layer's connection counts. */
#include "metrics.h"
#include "common/err.h"
#include "common/mem.h"
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

struct metrics metrics;

static const char *const method_names[METHOD_COUNT] = {
    "unknown", "challenge", "signup", "auth", "send", "sync", "history", "ping", "resolve",
    "upload_keys", "get_bundle", "key_count", "send_secret", "fetch_secret", "ack_secret",
    "set_ttl",
};

const char *metrics_method_name(enum metrics_method m)
{
    return m < METHOD_COUNT ? method_names[m] : "unknown";
}

void metrics_count(enum metrics_method m, int err)
{
    unsigned r = err_to_wire(err);
    if (r >= METRICS_RESULTS)
        r = METRICS_RESULTS - 1;
    if ((unsigned)m >= METHOD_COUNT)
        m = METHOD_UNKNOWN;
    atomic_fetch_add_explicit(&metrics.requests[m][r], 1, memory_order_relaxed);
}

struct out {
    char *buf;
    size_t len, cap;
};

PL_PRINTF(2, 3)
static void put(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        o->cap = o->cap * 2 + (size_t)n;
        o->buf = xrealloc(o->buf, o->cap);
    }
}

static uint64_t load(_Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

char *metrics_render(struct server *srv, size_t *len)
{
    struct out o = {.buf = xmalloc(8192), .cap = 8192};
    struct net_stats ns = {0};
    for (unsigned i = 0; i < srv->n_workers; i++) {
        struct net_stats one;
        if (!srv->workers[i].net)
            continue;
        net_loop_stats(srv->workers[i].net, &one);
        ns.accepted += one.accepted;
        ns.open_ws += one.open_ws;
        ns.open_conns += one.open_conns;
        ns.http_requests += one.http_requests;
        ns.send_queue_drops += one.send_queue_drops;
        ns.oversize_frames += one.oversize_frames;
        ns.handshake_failures += one.handshake_failures;
        ns.tls_handshakes += one.tls_handshakes;
        ns.tls_compact += one.tls_compact;
        ns.moved_in += one.moved_in;
    }
    put(&o, "# HELP parley_connections Open TCP connections.\n# TYPE parley_connections gauge\n"
            "parley_connections %llu\n",
        (unsigned long long)ns.open_conns);
    put(&o, "# HELP parley_websockets Open WebSocket sessions.\n# TYPE parley_websockets gauge\n"
            "parley_websockets %llu\n",
        (unsigned long long)ns.open_ws);
    put(&o, "# HELP parley_connections_accepted_total TCP connections accepted.\n"
            "# TYPE parley_connections_accepted_total counter\n"
            "parley_connections_accepted_total %llu\n",
        (unsigned long long)ns.accepted);
    put(&o, "# HELP parley_send_queue_drops_total Connections cut off for a full send queue.\n"
            "# TYPE parley_send_queue_drops_total counter\n"
            "parley_send_queue_drops_total %llu\n",
        (unsigned long long)ns.send_queue_drops);
    put(&o, "# HELP parley_oversize_frames_total Connections closed for a frame over the limit.\n"
            "# TYPE parley_oversize_frames_total counter\n"
            "parley_oversize_frames_total %llu\n",
        (unsigned long long)ns.oversize_frames);
    put(&o, "# HELP parley_handshake_failures_total Failed or timed-out TLS/HTTP handshakes.\n"
            "# TYPE parley_handshake_failures_total counter\n"
            "parley_handshake_failures_total %llu\n",
        (unsigned long long)ns.handshake_failures);
    put(&o, "# HELP parley_tls_handshakes_total TLS handshakes completed.\n"
            "# TYPE parley_tls_handshakes_total counter\n"
            "parley_tls_handshakes_total %llu\n",
        (unsigned long long)ns.tls_handshakes);
    put(&o, "# HELP parley_tls_compact_total TLS 1.3 connections moved off OpenSSL after the "
            "handshake (small record layer).\n"
            "# TYPE parley_tls_compact_total counter\n"
            "parley_tls_compact_total %llu\n",
        (unsigned long long)ns.tls_compact);
    put(&o, "# HELP parley_connections_moved_total Signed-in connections moved from the front "
            "loop to a messaging loop.\n"
            "# TYPE parley_connections_moved_total counter\n"
            "parley_connections_moved_total %llu\n",
        (unsigned long long)ns.moved_in);
    put(&o, "# HELP parley_http_requests_total Plain HTTP requests answered.\n"
            "# TYPE parley_http_requests_total counter\n"
            "parley_http_requests_total %llu\n",
        (unsigned long long)ns.http_requests);

    put(&o, "# HELP parley_requests_total Protocol requests by method and result.\n"
            "# TYPE parley_requests_total counter\n");
    for (int m = 0; m < METHOD_COUNT; m++) {
        for (int r = 0; r < METRICS_RESULTS; r++) {
            uint64_t v = load(&metrics.requests[m][r]);
            if (!v)
                continue;
            put(&o, "parley_requests_total{method=\"%s\",result=\"%s\"} %llu\n", method_names[m],
                r == 0 ? "ok" : err_name(-r), (unsigned long long)v);
        }
    }
    put(&o, "# HELP parley_pushes_total Push frames queued to connections.\n"
            "# TYPE parley_pushes_total counter\nparley_pushes_total %llu\n",
        (unsigned long long)load(&metrics.pushes));
    put(&o, "# HELP parley_rate_limited_total Requests refused by rate limits.\n"
            "# TYPE parley_rate_limited_total counter\nparley_rate_limited_total %llu\n",
        (unsigned long long)load(&metrics.rate_limited));
    put(&o, "# HELP parley_admission_refusals_total Sign-ups and logins refused for load.\n"
            "# TYPE parley_admission_refusals_total counter\n"
            "parley_admission_refusals_total %llu\n",
        (unsigned long long)load(&metrics.admission_refusals));
    put(&o, "# HELP parley_auth_failures_total Bad signatures and nonces.\n"
            "# TYPE parley_auth_failures_total counter\nparley_auth_failures_total %llu\n",
        (unsigned long long)load(&metrics.auth_failures));
    put(&o, "# HELP parley_secret_envelopes_total Secret envelopes queued (one per device).\n"
            "# TYPE parley_secret_envelopes_total counter\nparley_secret_envelopes_total %llu\n",
        (unsigned long long)load(&metrics.secret_envelopes));
    put(&o, "# HELP parley_secret_acked_total Secret envelopes deleted on ack.\n"
            "# TYPE parley_secret_acked_total counter\nparley_secret_acked_total %llu\n",
        (unsigned long long)load(&metrics.secret_acked));
    put(&o, "# HELP parley_purged_messages_total Messages deleted by auto-delete, counted once"
            " per account that had them (twice for a 1:1 message).\n"
            "# TYPE parley_purged_messages_total counter\nparley_purged_messages_total %llu\n",
        (unsigned long long)load(&metrics.purged_messages));
    put(&o, "# HELP parley_expired_envelopes_total Secret envelopes deleted unacked, too old.\n"
            "# TYPE parley_expired_envelopes_total counter\nparley_expired_envelopes_total %llu\n",
        (unsigned long long)load(&metrics.expired_envelopes));

    struct store_stats st;
    store_stats(srv->store, &st);
    static const char *const batch_le[] = {"1", "3", "7", "15", "31", "63", "127", "+Inf"};
    put(&o, "# HELP parley_commit_batch_size Requests per store transaction.\n"
            "# TYPE parley_commit_batch_size histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 8; i++) {
        cum += st.batch_hist[i];
        put(&o, "parley_commit_batch_size_bucket{le=\"%s\"} %llu\n", batch_le[i],
            (unsigned long long)cum);
    }
    put(&o, "parley_commit_batch_size_sum %llu\nparley_commit_batch_size_count %llu\n",
        (unsigned long long)st.committed_reqs, (unsigned long long)st.commits);
    static const char *const lat_le[] = {"0.00025", "0.0005", "0.001", "0.002", "0.004",
                                         "0.008",   "0.016",  "0.032", "0.064", "+Inf"};
    put(&o, "# HELP parley_commit_seconds Store commit latency (fsync included).\n"
            "# TYPE parley_commit_seconds histogram\n");
    cum = 0;
    for (int i = 0; i < 10; i++) {
        cum += st.latency_hist[i];
        put(&o, "parley_commit_seconds_bucket{le=\"%s\"} %llu\n", lat_le[i],
            (unsigned long long)cum);
    }
    put(&o, "parley_commit_seconds_sum %.6f\nparley_commit_seconds_count %llu\n",
        (double)st.latency_us_sum / 1e6, (unsigned long long)cum);
    put(&o, "# HELP parley_store_queue_refusals_total Store requests refused, queue full.\n"
            "# TYPE parley_store_queue_refusals_total counter\n"
            "parley_store_queue_refusals_total %llu\n",
        (unsigned long long)st.queue_refusals);
    *len = o.len;
    return o.buf;
}
