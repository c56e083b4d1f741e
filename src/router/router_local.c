/* SPDX-License-Identifier: MIT */
/* In-process router: a shared map from account to the set of ports (loops)
 * that hold one of its connections, and one inbox per port, drained by a
 * uv_async on that port's loop. */
#include "router.h"
#include "common/err.h"
#include "common/mem.h"
#include "common/u64map.h"

#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

struct router {
    uv_mutex_t lock;           /* guards ports[], online */
    struct router_port *ports[ROUTER_MAX_PORTS];
    struct u64map online;      /* user id -> bitmask of ports, cast to a pointer */
};

struct delivery {
    struct delivery *next;
    uint64_t user_id;
    uint64_t exclude_device;
    uint64_t only_device;
    size_t len;
    uint8_t frame[]; /* len bytes */
};

struct router_port {
    struct router *router;
    unsigned index;
    uv_async_t wake;
    router_deliver_cb *cb;
    void *arg;
    struct u64map counts;      /* user id -> connection count, loop-local */
    uv_mutex_t inbox_lock;     /* guards inbox */
    struct delivery *inbox, **inbox_tail;
};

int router_new(struct router **out)
{
    struct router *r = xcalloc(1, sizeof(*r));
    if (uv_mutex_init(&r->lock)) {
        free(r);
        return PARLEY_EINTERNAL;
    }
    u64map_init(&r->online);
    *out = r;
    return 0;
}

void router_free(struct router *r)
{
    if (!r)
        return;
    u64map_deinit(&r->online);
    uv_mutex_destroy(&r->lock);
    free(r);
}

static void on_wake(uv_async_t *h)
{
    struct router_port *p = PL_CONTAINER_OF(h, struct router_port, wake);
    uv_mutex_lock(&p->inbox_lock);
    struct delivery *d = p->inbox;
    p->inbox = NULL;
    p->inbox_tail = &p->inbox;
    uv_mutex_unlock(&p->inbox_lock);
    while (d) {
        struct delivery *next = d->next;
        if (u64map_get(&p->counts, d->user_id))
            p->cb(p->arg, d->user_id, d->exclude_device, d->only_device, d->frame, d->len);
        free(d);
        d = next;
    }
}

int router_port_open(struct router *r, uv_loop_t *loop, router_deliver_cb *cb, void *arg,
                     struct router_port **out)
{
    struct router_port *p = xcalloc(1, sizeof(*p));
    p->router = r;
    p->cb = cb;
    p->arg = arg;
    u64map_init(&p->counts);
    p->inbox_tail = &p->inbox;
    if (uv_mutex_init(&p->inbox_lock)) {
        free(p);
        return PARLEY_EINTERNAL;
    }
    uv_mutex_lock(&r->lock);
    unsigned i = 0;
    while (i < ROUTER_MAX_PORTS && r->ports[i])
        i++;
    if (i == ROUTER_MAX_PORTS) {
        uv_mutex_unlock(&r->lock);
        uv_mutex_destroy(&p->inbox_lock);
        free(p);
        return PARLEY_EBUSY;
    }
    p->index = i;
    r->ports[i] = p;
    uv_mutex_unlock(&r->lock);
    if (uv_async_init(loop, &p->wake, on_wake)) {
        uv_mutex_lock(&r->lock);
        r->ports[i] = NULL;
        uv_mutex_unlock(&r->lock);
        uv_mutex_destroy(&p->inbox_lock);
        free(p);
        return PARLEY_EINTERNAL;
    }
    *out = p;
    return 0;
}

static void on_port_closed(uv_handle_t *h)
{
    struct router_port *p = PL_CONTAINER_OF(h, struct router_port, wake);
    struct delivery *d = p->inbox;
    while (d) {
        struct delivery *next = d->next;
        free(d);
        d = next;
    }
    uv_mutex_destroy(&p->inbox_lock);
    u64map_deinit(&p->counts);
    free(p);
}

static void set_bit(struct router *r, uint64_t user_id, unsigned index, int on)
{
    uintptr_t mask = (uintptr_t)u64map_get(&r->online, user_id);
    if (on)
        mask |= (uintptr_t)1 << index;
    else
        mask &= ~((uintptr_t)1 << index);
    if (mask)
        u64map_put(&r->online, user_id, (void *)mask);
    else
        u64map_del(&r->online, user_id);
}

void router_port_close(struct router_port *p)
{
    struct router *r = p->router;
    uv_mutex_lock(&r->lock);
    uint64_t user;
    void *v;
    for (size_t it = 0; u64map_next(&p->counts, &it, &user, &v);)
        set_bit(r, user, p->index, 0);
    r->ports[p->index] = NULL;
    uv_mutex_unlock(&r->lock);
    uv_close((uv_handle_t *)&p->wake, on_port_closed);
}

void router_subscribe(struct router_port *p, uint64_t user_id)
{
    uintptr_t n = (uintptr_t)u64map_get(&p->counts, user_id);
    u64map_put(&p->counts, user_id, (void *)(n + 1));
    if (n == 0) {
        uv_mutex_lock(&p->router->lock);
        set_bit(p->router, user_id, p->index, 1);
        uv_mutex_unlock(&p->router->lock);
    }
}

void router_unsubscribe(struct router_port *p, uint64_t user_id)
{
    uintptr_t n = (uintptr_t)u64map_get(&p->counts, user_id);
    if (n > 1) {
        u64map_put(&p->counts, user_id, (void *)(n - 1));
        return;
    }
    if (n == 1) {
        u64map_del(&p->counts, user_id);
        uv_mutex_lock(&p->router->lock);
        set_bit(p->router, user_id, p->index, 0);
        uv_mutex_unlock(&p->router->lock);
    }
}

static void publish(struct router_port *p, uint64_t user_id, uint64_t exclude_device,
                    uint64_t only_device, const uint8_t *frame, size_t len)
{
    struct router *r = p->router;
    uv_mutex_lock(&r->lock);
    uintptr_t mask = (uintptr_t)u64map_get(&r->online, user_id);
    for (unsigned i = 0; mask && i < ROUTER_MAX_PORTS; i++) {
        if (!(mask & ((uintptr_t)1 << i)) || i == p->index || !r->ports[i])
            continue;
        struct router_port *q = r->ports[i];
        struct delivery *d = xmalloc(sizeof(*d) + len);
        d->next = NULL;
        d->user_id = user_id;
        d->exclude_device = exclude_device;
        d->only_device = only_device;
        d->len = len;
        memcpy(d->frame, frame, len);
        uv_mutex_lock(&q->inbox_lock);
        *q->inbox_tail = d;
        q->inbox_tail = &d->next;
        uv_mutex_unlock(&q->inbox_lock);
        uv_async_send(&q->wake);
    }
    uv_mutex_unlock(&r->lock);
    if (mask & ((uintptr_t)1 << p->index))
        p->cb(p->arg, user_id, exclude_device, only_device, frame, len);
}

void router_publish(struct router_port *p, uint64_t user_id, uint64_t exclude_device,
                    const uint8_t *frame, size_t len)
{
    publish(p, user_id, exclude_device, 0, frame, len);
}

void router_publish_device(struct router_port *p, uint64_t user_id, uint64_t device_id,
                           const uint8_t *frame, size_t len)
{
    publish(p, user_id, 0, device_id, frame, len);
}
