/* SPDX-License-Identifier: MIT */
/* The parleyd process. The main thread parses the command line, validates
 * the configuration, opens the store, binds the listening socket (for the
 * front loop; without one, one SO_REUSEPORT socket per worker) and starts
 * the workers; then it only handles signals: SIGHUP
 * reloads (keeping the old configuration if the new one is invalid),
 * SIGTERM/SIGINT stop accepting, let the workers finish, flush the store. */
#include "daemon.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"
#include "server.h"
#include "tlsctx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/banned.h"

enum { OV_LISTEN = 1, OV_DATA = 2, OV_PLAINTEXT = 4 };

static struct server server;

uint64_t server_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

struct config_ref *config_ref_hold(struct config_ref *r)
{
    atomic_fetch_add(&r->refs, 1);
    return r;
}

void config_ref_drop(struct config_ref *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        if (r->tls)
            SSL_CTX_free(r->tls);
        free(r);
    }
}

static void apply_overrides(struct config *cfg, const struct config *ov, unsigned mask)
{
    if (mask & OV_LISTEN) {
        memcpy(cfg->listen_host, ov->listen_host, sizeof(cfg->listen_host));
        cfg->listen_port = ov->listen_port;
    }
    if (mask & OV_DATA)
        memcpy(cfg->data_dir, ov->data_dir, sizeof(cfg->data_dir));
    if (mask & OV_PLAINTEXT)
        cfg->plaintext = true;
}

/* Builds a complete, validated configuration (file + overrides) with its TLS
 * context. Problems go to err. */
static int build_config(struct config_ref **out, FILE *err)
{
    struct config_ref *r = xcalloc(1, sizeof(*r));
    atomic_init(&r->refs, 1);
    config_defaults(&r->cfg);
    int rc = 0;
    if (server.config_path[0])
        rc = config_load(&r->cfg, server.config_path, err);
    apply_overrides(&r->cfg, &server.overrides, server.override_mask);
    if (config_validate(&r->cfg, err))
        rc = PARLEY_ECONFIG;
    if (rc == 0 && !r->cfg.plaintext) {
        if (mkdir(r->cfg.data_dir, 0700) != 0 && errno != EEXIST) {
            fprintf(err, "[server] data_dir: cannot create %s: %s\n", r->cfg.data_dir,
                    strerror(errno));
            rc = PARLEY_ECONFIG;
        } else if (tlsctx_new(r->cfg.tls_cert, r->cfg.tls_key, r->cfg.data_dir, &r->tls)) {
            fprintf(err, "[server] tls_cert, tls_key: cannot load the certificate or key\n");
            rc = PARLEY_ECONFIG;
        }
    }
    if (rc) {
        config_ref_drop(r);
        return rc;
    }
    *out = r;
    return 0;
}

static struct net_limits limits_of(const struct config *cfg)
{
    struct net_limits l = {
        .max_frame = cfg->max_frame_bytes,
        .max_send_queue = cfg->send_queue_bytes,
        .max_http_header = 8192,
        .handshake_ms = cfg->handshake_timeout_ms,
        .idle_ping_ms = cfg->idle_ping_s * 1000,
    };
    return l;
}

struct adm_limits adm_limits_of(const struct config *cfg)
{
    struct adm_limits l = {
        .budget = cfg->auth_per_turn,
        .capacity = cfg->auth_queue_max,
        .busy_max = cfg->auth_inflight_max,
        .max_wait_ms = cfg->auth_max_wait_ms,
        .turn_ms = cfg->auth_turn_ms,
    };
    return l;
}

/* --- workers ------------------------------------------------------------ */

static void on_control_closed(uv_handle_t *h)
{
    PL_UNUSED(h);
}

static void on_net_stopped(void *data)
{
    struct worker *w = data;
    w->net = NULL;
    worker_maybe_finish(w);
}

void worker_maybe_finish(struct worker *w)
{
    if (!w->stopping || w->net || w->in_flight || !w->store)
        return;
    expiry_stop(w);
    store_port_close(w->store);
    w->store = NULL;
    router_port_close(w->router);
    w->router = NULL;
    uv_close((uv_handle_t *)&w->control, on_control_closed);
}

static void on_control(uv_async_t *h)
{
    struct worker *w = PL_CONTAINER_OF(h, struct worker, control);
    uv_mutex_lock(&server.lock);
    struct config_ref *next = w->next_conf;
    w->next_conf = NULL;
    bool stop = w->stop_requested;
    uv_mutex_unlock(&server.lock);
    if (next && !w->stopping) {
        config_ref_drop(w->conf);
        w->conf = next;
        struct net_limits l = limits_of(&next->cfg);
        net_loop_reload(w->net, next->tls, &l);
        struct adm_limits al = adm_limits_of(&next->cfg);
        admission_set_limits(&w->adm, &al);
    } else if (next) {
        config_ref_drop(next);
    }
    if (stop && !w->stopping) {
        w->stopping = true;
        admission_close(&w->adm, session_admission_drop);
        w->adm_open = false;
        net_loop_stop(w->net, on_net_stopped, w);
    }
}

static void worker_run(void *arg)
{
    struct worker *w = arg;
    int rc = PARLEY_EINTERNAL;
    /* For top -H, perf and /proc/PID/task/TID/comm (at most 15 bytes). */
    char name[16];
    if (w->front)
        snprintf(name, sizeof(name), "parley-front");
    else
        snprintf(name, sizeof(name), "parley-loop%u", w->index);
    (void)pthread_setname_np(pthread_self(), name);
    struct net_limits l = limits_of(&w->conf->cfg);
    u64map_init(&w->online);
    u64map_init(&w->names);
    arena_init(&w->req_arena, 16384);
    if (uv_loop_init(&w->loop) != 0)
        goto fail;
    /* The admission control reads how long each turn was busy. */
    if (uv_loop_configure(&w->loop, UV_METRICS_IDLE_TIME) != 0)
        goto fail;
    if (uv_async_init(&w->loop, &w->control, on_control) != 0)
        goto fail;
    if ((rc = store_port_open(server.store, &w->loop, &w->store)) != 0)
        goto fail;
    if ((rc = router_port_open(server.router, &w->loop, session_deliver, w, &w->router)) != 0)
        goto fail;
    struct adm_limits al = adm_limits_of(&w->conf->cfg);
    if ((rc = admission_init(&w->adm, &w->loop, &al, &w->auth_in_flight, session_admitted,
                             session_admission_refuse, w)) != 0)
        goto fail;
    w->adm_open = true;
    if (w->index == 0 && (rc = expiry_start(w)) != 0)
        goto fail;
    rc = net_loop_start(&w->loop, w->listen_fd, w->conf->tls, &l, &session_callbacks, w, &w->net);
    w->listen_fd = -1; /* net_loop_start owns it, and closed it if it failed */
    if (rc != 0)
        goto fail;
    if (!w->front && (rc = net_loop_open_inbox(w->net, &w->inbox)) != 0)
        goto fail;
    uv_sem_post(&server.ready);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    goto out;
fail:
    /* Start-up failed before the loop ran: report it and stop this thread
     * only; the main thread stops the others. */
    w->start_error = rc ? rc : PARLEY_EINTERNAL;
    if (w->net)
        net_loop_stop(w->net, on_net_stopped, w);
    if (w->adm_open)
        admission_close(&w->adm, session_admission_drop);
    w->adm_open = false;
    expiry_stop(w);
    if (w->router)
        router_port_close(w->router);
    if (w->store)
        store_port_close(w->store);
    w->router = NULL;
    w->store = NULL;
    uv_close((uv_handle_t *)&w->control, on_control_closed);
    uv_sem_post(&server.ready);
    uv_run(&w->loop, UV_RUN_DEFAULT);
out:;
    void *v;
    uint64_t k;
    for (size_t it = 0; u64map_next(&w->names, &it, &k, &v);)
        free(v);
    u64map_deinit(&w->names);
    u64map_deinit(&w->online);
    session_worker_free(w);
    if (uv_loop_close(&w->loop) != 0)
        log_warn("core", "event=loop_close_busy worker=%u", w->index);
}

/* --- sockets ------------------------------------------------------------ */

static int bind_socket(const char *host, unsigned port, int *out_fd, unsigned *out_port)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else {
        return PARLEY_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PARLEY_EIO;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        log_error("core", "event=bind host=%s port=%u error=\"%s\"", host, port, strerror(e));
        return PARLEY_EIO;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return PARLEY_EIO;
    }
    *out_port = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    *out_fd = fd;
    return 0;
}

/* --- signals ------------------------------------------------------------ */

static uv_signal_t sig_hup, sig_term, sig_int;

static void reload(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    struct config_ref *next;
    int rc = err ? build_config(&next, err) : PARLEY_ENOMEM;
    if (err)
        fclose(err);
    if (rc) {
        /* One line per problem, so that each lands in the log whole. */
        char *save = NULL;
        for (char *line = buf ? strtok_r(buf, "\n", &save) : NULL; line;
             line = strtok_r(NULL, "\n", &save))
            log_warn("core", "event=reload_rejected problem=\"%s\"", line);
        log_warn("core", "event=reload_rejected action=keeping_previous_configuration");
        free(buf);
        return;
    }
    free(buf);
    const struct config *old = &server.conf->cfg, *c = &next->cfg;
    if (strcmp(old->listen_host, c->listen_host) || old->listen_port != c->listen_port ||
        strcmp(old->data_dir, c->data_dir) || old->threads != c->threads ||
        old->front_loop != c->front_loop || strcmp(old->db_path, c->db_path) ||
        old->plaintext != c->plaintext || old->store_max_batch != c->store_max_batch ||
        old->store_max_queue != c->store_max_queue ||
        old->store_user_cache != c->store_user_cache ||
        old->store_checkpoint_mib != c->store_checkpoint_mib ||
        old->envelopes_per_device != c->envelopes_per_device)
        log_warn("core", "event=reload_partial detail=\"listen, data_dir, threads, front_loop, "
                         "plaintext, [store] and secret.max_queued_per_device take effect on "
                         "restart\"");
    log_threshold = c->log_level;
    uv_mutex_lock(&server.lock);
    for (unsigned i = 0; i < server.n_workers; i++) {
        struct worker *w = &server.workers[i];
        config_ref_drop(w->next_conf);
        w->next_conf = config_ref_hold(next);
        uv_async_send(&w->control);
    }
    config_ref_drop(server.conf);
    server.conf = next;
    uv_mutex_unlock(&server.lock);
    log_info("core", "event=reloaded");
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP) {
        reload();
        return;
    }
    log_info("core", "event=stopping signal=%d", signum);
    uv_mutex_lock(&server.lock);
    for (unsigned i = 0; i < server.n_workers; i++) {
        server.workers[i].stop_requested = true;
        uv_async_send(&server.workers[i].control);
    }
    uv_mutex_unlock(&server.lock);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    PL_UNUSED(h);
}

/* --- command line ------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: parleyd [--config FILE] [--listen HOST:PORT] [--data DIR] [--plaintext]\n"
               "       parleyd --check-config FILE\n"
               "       parleyd --version | --help\n");
}

static int check_config(const char *path)
{
    snprintf(server.config_path, sizeof(server.config_path), "%s", path);
    struct config cfg;
    config_defaults(&cfg);
    int rc = config_load(&cfg, path, stdout);
    if (config_validate(&cfg, stdout))
        rc = PARLEY_ECONFIG;
    if (rc)
        return 1;
    printf("%s: ok\n", path);
    return 0;
}

int daemon_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("parleyd 0.1.0 (protocol 1)\n");
            return 0;
        } else if (!strcmp(a, "--check-config") && v) {
            return check_config(v);
        } else if (!strcmp(a, "--config") && v) {
            if (strlen(v) >= sizeof(server.config_path)) {
                fprintf(stderr, "parleyd: --config: path too long\n");
                return 2;
            }
            snprintf(server.config_path, sizeof(server.config_path), "%s", v);
            i++;
        } else if (!strcmp(a, "--listen") && v) {
            if (config_set_listen(&server.overrides, v)) {
                fprintf(stderr, "parleyd: --listen: expected HOST:PORT with an IP address, "
                                "got '%s'\n", v);
                return 2;
            }
            server.override_mask |= OV_LISTEN;
            i++;
        } else if (!strcmp(a, "--data") && v) {
            if (!*v || strlen(v) >= sizeof(server.overrides.data_dir)) {
                fprintf(stderr, "parleyd: --data: bad directory\n");
                return 2;
            }
            snprintf(server.overrides.data_dir, sizeof(server.overrides.data_dir), "%s", v);
            server.override_mask |= OV_DATA;
            i++;
        } else if (!strcmp(a, "--plaintext")) {
            server.override_mask |= OV_PLAINTEXT;
        } else {
            fprintf(stderr, "parleyd: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "parleyd: libsodium failed to initialise\n");
        return 1;
    }
    if (build_config(&server.conf, stderr)) {
        fprintf(stderr, "parleyd: invalid configuration\n");
        return 1;
    }
    struct config *cfg = &server.conf->cfg;
    log_threshold = cfg->log_level;
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "parleyd: cannot create %s: %s\n", cfg->data_dir, strerror(errno));
        return 1;
    }
    char db[1100];
    if (cfg->db_path[0])
        snprintf(db, sizeof(db), "%s", cfg->db_path);
    else
        snprintf(db, sizeof(db), "%s/parley.db", cfg->data_dir);

    int status = 1;
    struct store_config sc = {
        .path = db, .max_batch = cfg->store_max_batch, .max_queue = cfg->store_max_queue,
        .user_cache = cfg->store_user_cache,
        .checkpoint_bytes = (uint64_t)cfg->store_checkpoint_mib << 20,
        .envelopes_per_device = cfg->envelopes_per_device};
    if (store_open(&sc, &server.store)) {
        fprintf(stderr, "parleyd: cannot open the store at %s\n", db);
        config_ref_drop(server.conf);
        return 1;
    }
    if (router_new(&server.router)) {
        store_close(server.store);
        config_ref_drop(server.conf);
        return 1;
    }
    server.ip_limits = ratelimit_new(1u << 20);
    server.account_limits = ratelimit_new(1u << 20);
    server.signup_limits = ratelimit_new(1u << 20);
    uv_mutex_init(&server.lock);
    uv_sem_init(&server.ready, 0);

    unsigned n = cfg->threads;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)cpus : 1;
    }
    if (n > SERVER_MAX_WORKERS - (cfg->front_loop ? 1 : 0))
        n = SERVER_MAX_WORKERS - (cfg->front_loop ? 1 : 0);
    /* With a front loop, the messaging loops accept nothing: every
     * connection starts on the front loop, and a device that signs in
     * moves to a messaging loop. A surge of new connections and sign-ups
     * then costs the front loop's thread, which the kernel schedules like
     * any busy thread, while the messaging loops, mostly waiting, get the
     * CPU as soon as they wake. */
    server.n_messaging = n;
    if (cfg->front_loop)
        n++;
    unsigned port = cfg->listen_port;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &server.workers[i];
        w->srv = &server;
        w->index = i;
        w->front = cfg->front_loop && i == server.n_messaging;
        w->listen_fd = -1;
        net_inbox_init(&w->inbox);
        w->conf = config_ref_hold(server.conf);
        if ((w->front || !cfg->front_loop) &&
            bind_socket(cfg->listen_host, port, &w->listen_fd, &port)) {
            fprintf(stderr, "parleyd: cannot listen on %s:%u\n", cfg->listen_host, port);
            net_inbox_deinit(&w->inbox);
            config_ref_drop(w->conf);
            goto stop_workers;
        }
        server.n_workers++;
    }
    server.port = port;
    /* The messaging loops first: by the time the front loop accepts, their
     * inboxes are open (a device that signed in while one was not would
     * stay on the front loop). */
    for (unsigned i = 0; i < server.n_workers; i++) {
        if (server.workers[i].front)
            continue;
        if (uv_thread_create(&server.workers[i].thread, worker_run, &server.workers[i]) != 0)
            abort();
    }
    for (unsigned i = 0; i < server.n_messaging; i++)
        uv_sem_wait(&server.ready);
    if (cfg->front_loop) {
        struct worker *f = &server.workers[server.n_messaging];
        if (uv_thread_create(&f->thread, worker_run, f) != 0)
            abort();
        uv_sem_wait(&server.ready);
    }
    bool failed = false;
    for (unsigned i = 0; i < server.n_workers; i++)
        failed |= server.workers[i].start_error != 0;

    uv_loop_t *main_loop = uv_default_loop();
    uv_signal_init(main_loop, &sig_hup);
    uv_signal_init(main_loop, &sig_term);
    uv_signal_init(main_loop, &sig_int);
    uv_signal_start(&sig_hup, on_signal, SIGHUP);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    if (failed) {
        fprintf(stderr, "parleyd: start-up failed\n");
        on_signal(&sig_term, SIGTERM);
    } else {
        log_info("core", "event=started workers=%u tls=%s", server.n_workers,
                 cfg->plaintext ? "off" : "on");
        const char *h = cfg->listen_host;
        bool v6 = strchr(h, ':') != NULL;
        printf("parleyd: listening on %s%s%s:%u\n", v6 ? "[" : "", h, v6 ? "]" : "", port);
        fflush(stdout);
        status = 0;
    }
    uv_run(main_loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < server.n_workers; i++)
        uv_thread_join(&server.workers[i].thread);
    uv_loop_close(main_loop);

stop_workers:
    for (unsigned i = 0; i < server.n_workers; i++) {
        struct worker *w = &server.workers[i];
        if (w->listen_fd >= 0)
            close(w->listen_fd);
        net_inbox_deinit(&w->inbox);
        config_ref_drop(w->conf);
        config_ref_drop(w->next_conf);
    }
    store_close(server.store);
    router_free(server.router);
    ratelimit_free(server.ip_limits);
    ratelimit_free(server.account_limits);
    ratelimit_free(server.signup_limits);
    config_ref_drop(server.conf);
    log_info("core", "event=stopped");
    return status;
}
