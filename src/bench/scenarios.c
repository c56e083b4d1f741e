/* SPDX-License-Identifier: MIT */
/* The scenarios: signup, msgs, secret, idle, surge. Each is a sequence of
 * loop phases (setup, measured window, drain) over the load engines; the
 * server's /proc figures are read at the edges of the measured window. */
#include "common/err.h"
#include "common/mem.h"
#include "load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

#define FINE_TICK_MS 1
#define COARSE_TICK_MS 20
#define SETTLE_MS 500
#define SETUP_CONCURRENCY 32
#define SETUP_ATTEMPTS 8
#define SETUP_LIMIT_S 120.0
#define CONNECT_CONCURRENCY 256
#define CONNECT_ATTEMPTS 3

/* The scenario running now: phases' tick functions find their state here
 * (one scenario per process; only the main loop's thread reads it). */
static void *cur;

static void server_stat(struct bench *b, struct procstat *ps)
{
    memset(ps, 0, sizeof(*ps));
    if (b->opt.server_pid > 0 && procstat_read(b->opt.server_pid, ps) != 0)
        fprintf(stderr, "parley-bench: cannot read /proc/%d: server figures left out\n",
                b->opt.server_pid);
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static double secs(int64_t us)
{
    return (double)us / 1e6;
}

static void set_int(json_t *o, const char *k, uint64_t v)
{
    json_object_set_new(o, k, json_integer((json_int_t)v));
}

static void set_real(json_t *o, const char *k, double v)
{
    json_object_set_new(o, k, json_real(v));
}

static void set_hist(json_t *o, const char *prefix, const struct hist *h)
{
    char k[64];
    snprintf(k, sizeof(k), "%s_p50_ms", prefix);
    set_real(o, k, ms(hist_percentile(h, 0.50)));
    snprintf(k, sizeof(k), "%s_p99_ms", prefix);
    set_real(o, k, ms(hist_percentile(h, 0.99)));
    snprintf(k, sizeof(k), "%s_max_ms", prefix);
    set_real(o, k, ms(h->max_us));
    snprintf(k, sizeof(k), "%s_count", prefix);
    set_int(o, k, h->count);
}

static void add_drive(json_t *extra, const char *key, const struct drive_stats *ds, double s)
{
    json_t *o = json_object();
    set_int(o, "attempts", ds->attempts);
    set_int(o, "ready", ds->ready);
    set_int(o, "failed", ds->failed);
    set_int(o, "timeouts", ds->timeouts);
    set_int(o, "refused_retry", ds->refused_retry);
    set_int(o, "refused_no_retry", ds->refused_noretry);
    json_object_set_new(o, "codes", bench_codes_json(ds->by_code));
    set_real(o, "seconds", s);
    json_object_set_new(extra, key, o);
}

static void setup_failed(const char *what, size_t want, const struct drive_stats *ds)
{
    fprintf(stderr,
            "parley-bench: setup failed: %llu of %zu %s (timeouts %llu, refusals %llu with "
            "retry_after, %llu without)\n",
            (unsigned long long)ds->ready, want, what, (unsigned long long)ds->timeouts,
            (unsigned long long)ds->refused_retry, (unsigned long long)ds->refused_noretry);
    for (unsigned i = 0; i < BENCH_ERR_CODES; i++) {
        if (ds->by_code[i])
            fprintf(stderr, "parley-bench:   %s: %llu\n", err_name(err_from_wire(i)),
                    (unsigned long long)ds->by_code[i]);
    }
}

static void add_signload(json_t *extra, const char *prefix, const struct signload_stats *st)
{
    char k[64];
#define SL_INT(name, v)                                                                            \
    do {                                                                                           \
        snprintf(k, sizeof(k), "%s%s", prefix, name);                                              \
        set_int(extra, k, v);                                                                      \
    } while (0)
    SL_INT("started", st->started);
    SL_INT("accepted", st->accepted);
    SL_INT("refused_retry", st->refused_retry);
    SL_INT("refused_no_retry", st->refused_noretry);
    SL_INT("timeouts", st->timeouts);
    SL_INT("errors", st->errors);
    SL_INT("skipped", st->skipped);
#undef SL_INT
    snprintf(k, sizeof(k), "%scodes", prefix);
    json_object_set_new(extra, k, bench_codes_json(st->by_code));
}

/* signup */

struct signup_run {
    struct signload s;
    int64_t t0, t_stop, t_done;
};

static void signup_tick(struct bench *b)
{
    struct signup_run *run = cur;
    int64_t now = bench_now_us();
    signload_tick(&run->s);
    if (run->s.running && (now - run->t0 >= (int64_t)(b->opt.duration_s * 1e6) || b->stopping)) {
        signload_stop(&run->s);
        run->t_stop = now;
    }
    if (run->s.running)
        return;
    if (now - run->t_stop > (int64_t)b->opt.timeout_ms * 1000 + 1000000)
        signload_abort(&run->s);
    if (run->s.inflight == 0) {
        run->t_done = now;
        bench_phase_end(b);
    }
}

int scenario_signup(struct bench *b, struct bench_result *r, json_t *extra)
{
    struct signup_run *run = xcalloc(1, sizeof(*run));
    size_t cap =
        b->opt.max ? b->opt.concurrency : (size_t)(b->fd_limit > 256 ? b->fd_limit - 128 : 128);
    signload_init(&run->s, b, b->opt.max ? 0 : b->opt.rate, cap);
    cur = run;
    server_stat(b, &r->before);
    run->t0 = bench_now_us();
    signload_start(&run->s);
    bench_phase_run(b, FINE_TICK_MS, signup_tick);
    server_stat(b, &r->after);
    bench_drain_loop(b);

    const struct signload_stats *st = &run->s.st;
    r->duration_s = secs(run->t_done - run->t0);
    r->sent = st->started;
    r->delivered = st->accepted;
    r->errors = st->errors;
    r->per_s = r->duration_s > 0 ? (double)st->accepted / r->duration_s : 0;
    r->latency = &st->latency;
    set_real(extra, "offered_rate", b->opt.max ? 0 : b->opt.rate);
    set_int(extra, "concurrency", b->opt.max ? b->opt.concurrency : 0);
    add_signload(extra, "", st);
    /* r->latency points into run: the caller reads it before scenario_free. */
    b->scenario_mem = run;
    return 0;
}

/* msgs */

struct msgs_run {
    struct msgload m;
    int64_t t0, t_end;
    int64_t last_progress_us; /* drain: when something last settled */
    uint64_t progress;        /* drain: deliveries, acks and failures so far */
    bool drain_capped;        /* the drain ended at its cap while messages still settled */
    int64_t keys_until_us; /* secret: the key uploads' deadline */
    double duration_s;
    bool ended;
};

/* The drain after the window: it ends once nothing is in flight, or once
 * nothing has settled (delivered, acked, failed) for --drain-ms, so that
 * what is still missing then is lost; or, while things still settle, at
 * DRAIN_CAP_US, when what is in flight is reported as late, not lost. */
#define DRAIN_CAP_US (120 * 1000000LL)

static bool drain_done(struct bench *b, struct msgs_run *run, int64_t now)
{
    const struct msgload *m = &run->m;
    uint64_t progress = m->delivered + m->acked + m->failed + m->acks;
    if (progress != run->progress || run->last_progress_us == 0) {
        run->progress = progress;
        run->last_progress_us = now;
    }
    uint64_t inflight = msgload_inflight(m);
    if (inflight == 0 || now - run->last_progress_us > (int64_t)b->opt.drain_ms * 1000)
        return true;
    if (now - run->t_end > DRAIN_CAP_US) {
        run->drain_capped = true;
        return true;
    }
    return false;
}

static void msgs_tick(struct bench *b)
{
    struct msgs_run *run = cur;
    int64_t now = bench_now_us();
    msgload_tick(&run->m);
    if (!run->ended && (now - run->t0 >= (int64_t)(run->duration_s * 1e6) || b->stopping)) {
        msgload_stop(&run->m);
        run->ended = true;
        run->t_end = now;
    }
    if (run->ended && drain_done(b, run, now))
        bench_phase_end(b);
}

static void msgs_fill(struct bench *b, struct msgs_run *run, struct bench_result *r, json_t *extra)
{
    const struct msgload *m = &run->m;
    r->duration_s = secs(run->t_end - run->t0);
    r->sent = m->sent;
    r->delivered = m->delivered;
    /* Missing at the end: lost if the stream had gone quiet, late if the
     * drain's cap cut it short while messages still arrived. */
    uint64_t missing = msgload_lost(m);
    r->lost = run->drain_capped ? 0 : missing;
    r->duplicates = m->duplicates;
    r->errors = m->failed + m->conn_lost;
    r->per_s = r->duration_s > 0 ? (double)m->delivered_in_window / r->duration_s : 0;
    r->latency = m->latency;
    set_int(extra, "pairs", m->n / 2);
    set_int(extra, "window", m->window);
    set_int(extra, "size", b->opt.size);
    set_real(extra, "offered_rate", m->rate);
    set_int(extra, "acked", m->acked);
    set_int(extra, "send_errors", m->failed);
    set_int(extra, "capped", m->capped);
    set_int(extra, "late", run->drain_capped ? missing : 0);
    set_real(extra, "drain_s",
             run->last_progress_us > run->t_end ? secs(run->last_progress_us - run->t_end) : 0);
    set_int(extra, "unexpected", m->unexpected);
    set_int(extra, "conn_lost", m->conn_lost);
    json_object_set_new(extra, "send_error_codes", bench_codes_json(m->by_code));
    if (m->secret) {
        r->errors += m->ack_errors;
        set_int(extra, "envelope_acks", m->acks);
        set_int(extra, "envelope_acks_deleted", m->acks_deleted);
        set_int(extra, "ack_errors", m->ack_errors);
    }
    if (r->before.ok && r->after.ok && m->delivered > 0)
        set_real(extra, "server_cpu_us_per_msg",
                 (r->after.cpu_s - r->before.cpu_s) * 1e6 / (double)m->delivered);
    else
        json_object_set_new(extra, "server_cpu_us_per_msg", json_null());
}

static void keys_tick(struct bench *b)
{
    struct msgs_run *run = cur;
    msgload_keys_tick(&run->m);
    if (msgload_keys_pending(&run->m) == 0 || bench_now_us() >= run->keys_until_us || b->stopping)
        bench_phase_end(b);
}

/* Every client uploads its keys, unmeasured; returns 0 or 1 (not all did). */
static int secret_keys(struct bench *b, struct msgs_run *run, json_t *extra)
{
    struct msgload *m = &run->m;
    int64_t k0 = bench_now_us();
    run->keys_until_us = k0 + (int64_t)(SETUP_LIMIT_S * 1e6);
    msgload_keys_begin(m);
    bench_phase_run(b, COARSE_TICK_MS, keys_tick);
    if (m->keys_ok != m->n) {
        fprintf(stderr, "parley-bench: setup failed: %llu of %zu clients uploaded keys\n",
                (unsigned long long)m->keys_ok, m->n);
        for (unsigned i = 0; i < BENCH_ERR_CODES; i++) {
            if (m->keys_by_code[i])
                fprintf(stderr, "parley-bench:   %s: %llu\n", err_name(err_from_wire(i)),
                        (unsigned long long)m->keys_by_code[i]);
        }
        return 1;
    }
    json_t *o = json_object();
    set_int(o, "uploaded", m->keys_ok);
    json_object_set_new(o, "codes", bench_codes_json(m->keys_by_code));
    set_real(o, "seconds", secs(bench_now_us() - k0));
    json_object_set_new(extra, "keys", o);
    return 0;
}

/* msgs, and secret: the same load over secret envelopes. */
static int run_msgs(struct bench *b, struct bench_result *r, json_t *extra, bool secret)
{
    struct msgs_run *run = xcalloc(1, sizeof(*run));
    b->scenario_mem = run;
    struct drive_stats ds = {0};
    int64_t s0 = bench_now_us();
    if (msgload_setup(&run->m, b, b->opt.pairs, &ds) != 0) {
        setup_failed("clients signed up", (size_t)b->opt.pairs * 2, &ds);
        return 1;
    }
    add_drive(extra, "setup", &ds, secs(bench_now_us() - s0));
    cur = run;
    if (secret && secret_keys(b, run, extra) != 0)
        return 1;
    run->duration_s = b->opt.duration_s;
    server_stat(b, &r->before);
    msgload_begin(&run->m, b->opt.rate, b->opt.window, b->opt.size);
    run->t0 = run->m.t0_us;
    bench_phase_run(b, b->opt.rate > 0 ? FINE_TICK_MS : COARSE_TICK_MS, msgs_tick);
    server_stat(b, &r->after);
    msgs_fill(b, run, r, extra);
    return 0;
}

int scenario_msgs(struct bench *b, struct bench_result *r, json_t *extra)
{
    return run_msgs(b, r, extra, false);
}

int scenario_secret(struct bench *b, struct bench_result *r, json_t *extra)
{
    return run_msgs(b, r, extra, true);
}

/* surge */

struct surge_run {
    struct msgs_run mr;
    struct signthread *st; /* the sign-ups, on a thread of their own */
    int64_t surge_start_us, surge_stop_us;
    int phase; /* 0 before, 1 during, 2 after the surge */
};

static void surge_tick(struct bench *b)
{
    struct surge_run *run = cur;
    int64_t now = bench_now_us();
    if (run->phase == 0 && now >= run->surge_start_us) {
        run->phase = 1;
        msgload_next_phase(&run->mr.m);
    } else if (run->phase == 1 && (now >= run->surge_stop_us || b->stopping)) {
        run->phase = 2;
        msgload_next_phase(&run->mr.m);
    }
    if (b->stopping)
        signthread_stop(run->st);
    msgload_tick(&run->mr.m);
    struct msgs_run *mr = &run->mr;
    if (!mr->ended && (now - mr->t0 >= (int64_t)(mr->duration_s * 1e6) || b->stopping)) {
        msgload_stop(&mr->m);
        mr->ended = true;
        mr->t_end = now;
    }
    if (mr->ended && drain_done(b, mr, now))
        bench_phase_end(b);
}

int scenario_surge(struct bench *b, struct bench_result *r, json_t *extra)
{
    struct surge_run *run = xcalloc(1, sizeof(*run));
    b->scenario_mem = run;
    struct drive_stats ds = {0};
    int64_t s0 = bench_now_us();
    if (msgload_setup(&run->mr.m, b, b->opt.pairs, &ds) != 0) {
        setup_failed("clients signed up", (size_t)b->opt.pairs * 2, &ds);
        return 1;
    }
    add_drive(extra, "setup", &ds, secs(bench_now_us() - s0));
    size_t cap = b->fd_limit > 256 + run->mr.m.n ? b->fd_limit - 128 - run->mr.m.n : 64;
    cur = run;
    run->mr.duration_s = b->opt.duration_s;
    int64_t third = (int64_t)(run->mr.duration_s * 1e6 / 3);
    int64_t t0 = bench_now_us();
    run->surge_start_us = t0 + third;
    run->surge_stop_us = t0 + 2 * third;
    if (signthread_start(&run->st, b, b->opt.signup_rate, cap, run->surge_start_us,
                         run->surge_stop_us) != 0) {
        fputs("parley-bench: cannot start the sign-up thread\n", stderr);
        return 1;
    }
    server_stat(b, &r->before);
    msgload_begin(&run->mr.m, b->opt.rate, b->opt.window, b->opt.size);
    run->mr.t0 = run->mr.m.t0_us;
    bench_phase_run(b, FINE_TICK_MS, surge_tick);
    signthread_join(run->st);
    server_stat(b, &r->after);
    msgs_fill(b, &run->mr, r, extra);
    const struct signload_stats *st = signthread_stats(run->st);
    set_real(extra, "signup_rate", b->opt.signup_rate);
    set_real(extra, "signup_offered_per_s", signthread_offered_per_s(run->st));
    set_hist(extra, "before", run->mr.m.phase_hist[0]);
    set_hist(extra, "during", run->mr.m.phase_hist[1]);
    set_hist(extra, "after", run->mr.m.phase_hist[2]);
    add_signload(extra, "signup_", st);
    set_hist(extra, "signup", &st->latency);
    return 0;
}

/* idle */

struct idle_run {
    struct client **cls;
    int64_t *ping_at_us;   /* when each connection pings next */
    int64_t *ping_sent_us; /* the outstanding ping's send time, 0: none */
    size_t n;
    struct hist rtt;
    uint64_t pings, pongs, dropped, ping_errors;
    uint64_t by_code[BENCH_ERR_CODES];
    int64_t t_until;
    bool holding;
};

static void idle_frame(struct client *cl, const PlFrame *f)
{
    struct idle_run *run = cl->owner;
    if (f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE || !f->response)
        return;
    const Parley__V1__Response *resp = f->response;
    if (run->ping_sent_us[cl->slot] == 0)
        return;
    if (resp->error) {
        run->ping_errors++;
        bench_count_code(run->by_code, err_from_wire(resp->error->code));
    } else {
        run->pongs++;
        hist_record(&run->rtt, (uint64_t)(bench_now_us() - run->ping_sent_us[cl->slot]));
    }
    run->ping_sent_us[cl->slot] = 0;
}

static void idle_ready(struct client *cl, int err, uint32_t retry_after_ms)
{
    (void)cl;
    (void)err;
    (void)retry_after_ms;
}

static void idle_closed(struct client *cl)
{
    struct idle_run *run = cl->owner;
    run->dropped++;
}

static const struct client_ops idle_ops = {idle_ready, idle_frame, idle_closed};

static void idle_tick(struct bench *b)
{
    struct idle_run *run = cur;
    int64_t now = bench_now_us();
    if (run->holding && (now >= run->t_until || b->stopping)) {
        run->holding = false;
        run->t_until = now + (int64_t)b->opt.drain_ms * 1000;
    }
    bool outstanding = false;
    for (size_t i = 0; i < run->n; i++) {
        struct client *cl = run->cls[i];
        if (cl->state != CLIENT_READY)
            continue;
        if (run->ping_sent_us[i]) {
            outstanding = true;
            continue;
        }
        if (!run->holding || now < run->ping_at_us[i])
            continue;
        Parley__V1__Request req = PARLEY__V1__REQUEST__INIT;
        Parley__V1__PingRequest ping = PARLEY__V1__PING_REQUEST__INIT;
        ping.payload = (uint64_t)now;
        req.id = CLIENT_ID_FIRST_FREE + run->pings;
        req.method_case = PARLEY__V1__REQUEST__METHOD_PING;
        req.ping = &ping;
        if (client_request(cl, &req) == 0) {
            run->pings++;
            run->ping_sent_us[i] = now;
        }
        run->ping_at_us[i] = now + (int64_t)(b->opt.ping_interval_s * 1e6);
    }
    if (!run->holding && (!outstanding || now >= run->t_until))
        bench_phase_end(b);
}

static void idle_settle_tick(struct bench *b)
{
    struct idle_run *run = cur;
    if (bench_now_us() >= run->t_until)
        bench_phase_end(b);
}

int scenario_idle(struct bench *b, struct bench_result *r, json_t *extra)
{
    size_t n = b->opt.conns;
    size_t k = b->opt.accounts ? b->opt.accounts : PL_MIN(n, (size_t)100);
    struct idle_run *run = xcalloc(1, sizeof(*run));
    b->scenario_mem = run;
    cur = run;
    hist_init(&run->rtt);

    /* Accounts: signed up, then hung up. */
    struct account *accts = xcalloc(k, sizeof(*accts));
    struct client *setup = xcalloc(k, sizeof(*setup));
    struct client **sp = xcalloc(k, sizeof(*sp));
    for (size_t i = 0; i < k; i++) {
        account_init(&accts[i], b->prefix, b->next_account++);
        setup[i].acct = &accts[i];
        sp[i] = &setup[i];
    }
    struct drive_stats ds = {0};
    int64_t s0 = bench_now_us();
    size_t up = drive_clients(b, sp, k, CLIENT_SIGNUP, false, SETUP_CONCURRENCY, SETUP_ATTEMPTS,
                              SETUP_LIMIT_S, &ds);
    bench_drain_loop(b);
    free(sp);
    free(setup);
    if (ds.ready != k) {
        (void)up;
        setup_failed("accounts signed up", k, &ds);
        free(accts);
        return 1;
    }
    add_drive(extra, "setup", &ds, secs(bench_now_us() - s0));

    /* Let the server release the setup connections before measuring. */
    run->t_until = bench_now_us() + SETTLE_MS * 1000;
    bench_phase_run(b, COARSE_TICK_MS, idle_settle_tick);
    server_stat(b, &r->before);

    /* N connections, each authenticating as one of the k devices. */
    struct client *conns = xcalloc(n, sizeof(*conns));
    run->cls = xcalloc(n, sizeof(*run->cls));
    run->ping_at_us = xcalloc(n, sizeof(int64_t));
    run->ping_sent_us = xcalloc(n, sizeof(int64_t));
    run->n = n;
    for (size_t i = 0; i < n; i++) {
        conns[i].acct = &accts[i % k];
        run->cls[i] = &conns[i];
    }
    struct hist *conn_lat = xmalloc(sizeof(*conn_lat));
    hist_init(conn_lat);
    struct drive_stats cs = {.latency = conn_lat};
    int64_t c0 = bench_now_us();
    size_t connected = drive_clients(b, run->cls, n, CLIENT_AUTH, true, CONNECT_CONCURRENCY,
                                     CONNECT_ATTEMPTS, PL_MAX(60.0, (double)n / 100.0), &cs);
    int64_t c1 = bench_now_us();
    struct procstat mid;
    server_stat(b, &mid);
    for (size_t i = 0; i < n; i++) {
        conns[i].owner = run;
        conns[i].ops = &idle_ops;
        conns[i].slot = i;
        /* Spread the pings evenly over one interval. */
        run->ping_at_us[i] = c1 + (int64_t)(b->opt.ping_interval_s * 1e6 * (double)i / (double)n);
    }

    /* Hold. */
    run->holding = true;
    run->t_until = c1 + (int64_t)(b->opt.hold_s * 1e6);
    bench_phase_run(b, COARSE_TICK_MS, idle_tick);
    int64_t h1 = bench_now_us();
    server_stat(b, &r->after);
    size_t still = 0;
    for (size_t i = 0; i < n; i++)
        still += conns[i].state == CLIENT_READY;
    bench_close_clients(b, run->cls, n);

    r->duration_s = secs(h1 - c1);
    r->sent = run->pings;
    r->delivered = run->pongs;
    uint64_t settled = run->pongs + run->ping_errors;
    r->lost = run->pings > settled ? run->pings - settled : 0;
    r->errors = cs.failed + run->dropped + run->ping_errors;
    r->per_s = c1 > c0 ? (double)connected / secs(c1 - c0) : 0;
    r->latency = &run->rtt;
    set_int(extra, "conns", n);
    set_int(extra, "connected", connected);
    set_int(extra, "connect_failed", cs.failed);
    set_int(extra, "connect_refused_retry", cs.refused_retry);
    set_int(extra, "connect_refused_no_retry", cs.refused_noretry);
    json_object_set_new(extra, "connect_codes", bench_codes_json(cs.by_code));
    set_real(extra, "connect_s", secs(c1 - c0));
    set_hist(extra, "connect", conn_lat);
    set_int(extra, "still_connected", still);
    set_int(extra, "dropped", run->dropped);
    set_int(extra, "accounts", k);
    json_object_set_new(extra, "tls", json_boolean(b->target.ssl_ctx != NULL));
    set_real(extra, "ping_interval_s", b->opt.ping_interval_s);
    if (r->before.ok && mid.ok && r->after.ok) {
        /* The cost of an idle connection: RSS at the end of the hold, when
         * the connections have been quiet (between pings) for a while. The
         * figure just after connecting, with every connection's handshake
         * state still fresh, is kept beside it. */
        set_int(extra, "rss_before_kib", r->before.rss_kib);
        set_int(extra, "rss_connected_kib", mid.rss_kib);
        set_int(extra, "rss_held_kib", r->after.rss_kib);
        double per = connected ? ((double)r->after.rss_kib - (double)r->before.rss_kib) /
                                     (double)connected
                               : 0;
        set_real(extra, "rss_per_conn_kib", per);
        set_real(extra, "rss_per_conn_connected_kib",
                 connected ? ((double)mid.rss_kib - (double)r->before.rss_kib) / (double)connected
                           : 0);
    } else {
        json_object_set_new(extra, "rss_per_conn_kib", json_null());
    }
    free(conn_lat);
    free(conns);
    free(accts);
    return 0;
}

void scenario_free(struct bench *b)
{
    if (b && b->scenario_mem &&
        (strcmp(b->opt.scenario, "msgs") == 0 || strcmp(b->opt.scenario, "secret") == 0))
        msgload_free(&((struct msgs_run *)b->scenario_mem)->m);
    if (b && b->scenario_mem && strcmp(b->opt.scenario, "surge") == 0) {
        struct surge_run *run = b->scenario_mem;
        signthread_free(run->st);
        msgload_free(&run->mr.m);
    }
    if (b && b->scenario_mem && strcmp(b->opt.scenario, "idle") == 0) {
        struct idle_run *run = b->scenario_mem;
        free(run->cls);
        free(run->ping_at_us);
        free(run->ping_sent_us);
    }
    if (b)
        free(b->scenario_mem);
}
