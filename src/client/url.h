/* SPDX-License-Identifier: MIT */
/* Server URLs for libparley: "https://HOST[:PORT][/]" or, for a loopback
 * host only, "http://HOST[:PORT][/]". Parsing only; no name resolution. */
#ifndef PARLEY_CLIENT_URL_H
#define PARLEY_CLIENT_URL_H

#include "common/compiler.h"

#include <stdbool.h>
#include <stdint.h>

#define URL_HOST_MAX 253

struct url {
    bool tls;                       /* https:// */
    bool host_is_ip;                /* HOST is an IPv4 or IPv6 literal */
    char host[URL_HOST_MAX + 1];    /* without IPv6 brackets */
    char port[6];                   /* decimal, 1-65535 */
    char hostport[URL_HOST_MAX + 9]; /* "host:port" or "[v6]:port": the known_servers key */
};

/* Parses s. The port defaults to 443 (https) or 80 (http); a path other
 * than "/", a query, a fragment or user info is refused. Plain http:// is
 * accepted only for 127.0.0.0/8, ::1 and localhost. Returns 0 and fills
 * *out, or PARLEY_EINVAL with *out untouched. */
PL_NODISCARD int url_parse(const char *s, struct url *out);

/* Whether host (no brackets) is localhost, in 127.0.0.0/8, or ::1. */
bool url_is_loopback(const char *host);

#endif
