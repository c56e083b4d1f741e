/* SPDX-License-Identifier: MIT */
/* Server URL parsing; see url.h. */
#include "url.h"
#include "common/err.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

bool url_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
    return false;
}

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

int url_parse(const char *s, struct url *out)
{
    struct url u;
    const char *p, *host, *host_end, *port = NULL;
    size_t host_len;

    if (!s)
        return PARLEY_EINVAL;
    memset(&u, 0, sizeof(u));
    if (strncasecmp(s, "https://", 8) == 0) {
        u.tls = true;
        p = s + 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
    } else {
        return PARLEY_EINVAL;
    }

    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end)
            return PARLEY_EINVAL;
        p = host_end + 1;
    } else {
        host = p;
        while (is_host_char(*p))
            p++;
        host_end = p;
    }
    host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len > URL_HOST_MAX)
        return PARLEY_EINVAL;
    memcpy(u.host, host, host_len);
    u.host[host_len] = '\0';

    if (*p == ':') {
        port = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == port || p - port > 5)
            return PARLEY_EINVAL;
    }
    if (*p == '/')
        p++;
    if (*p != '\0')
        return PARLEY_EINVAL;

    if (port) {
        char *end;
        unsigned long n = strtoul(port, &end, 10);
        if (n == 0 || n > 65535)
            return PARLEY_EINVAL;
        snprintf(u.port, sizeof(u.port), "%lu", n);
    } else {
        snprintf(u.port, sizeof(u.port), "%s", u.tls ? "443" : "80");
    }

    struct in_addr a4;
    struct in6_addr a6;
    bool bracketed = host > s && host[-1] == '[';
    if (bracketed) {
        if (inet_pton(AF_INET6, u.host, &a6) != 1)
            return PARLEY_EINVAL;
        u.host_is_ip = true;
    } else if (inet_pton(AF_INET, u.host, &a4) == 1) {
        u.host_is_ip = true;
    }
    if (!u.tls && !url_is_loopback(u.host))
        return PARLEY_EINVAL;
    snprintf(u.hostport, sizeof(u.hostport), bracketed ? "[%s]:%s" : "%s:%s", u.host, u.port);
    *out = u;
    return 0;
}
