/* SPDX-License-Identifier: MIT */
/* Reads HTTP/1.1 requests with http-parser, keeping the request line and the
 * four headers the WebSocket upgrade needs. Bounds: the head by max_header
 * (431), the target by NET_REQ_PATH_MAX (414), a body by
 * NET_REQ_BODY_DISCARD_MAX (413). Answering is server.c's job. */
#include "net/http.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

enum tracked { H_NONE = 0, H_UPGRADE, H_CONNECTION, H_KEY, H_VERSION };

static struct net_req *req_of(http_parser *p)
{
    return p->data;
}

static void lower_copy(char *dst, const char *src, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = src[i];
        dst[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
}

/* Whether the comma-separated list s[0..len) holds token (case-insensitive). */
static bool has_token(const char *s, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(s + start, token, tlen) == 0)
            return true;
    }
    return false;
}

/* A Sec-WebSocket-Key must be the base64 encoding of 16 bytes (RFC 6455 4.1). */
static bool key_is_valid(const char *s, size_t len)
{
    if (len != 24 || s[22] != '=' || s[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++) {
        char ch = s[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
        if (!ok)
            return false;
    }
    unsigned char out[24];
    return EVP_DecodeBlock(out, (const unsigned char *)s, 24) == 18;
}

static void finish_value(struct net_req *r)
{
    if (!r->in_value)
        return;
    r->in_value = false;
    switch (r->cur) {
    case H_UPGRADE:
        if (!r->val_long && has_token(r->val, r->val_len, "websocket"))
            r->upgrade_websocket = true;
        break;
    case H_CONNECTION:
        if (!r->val_long && has_token(r->val, r->val_len, "upgrade"))
            r->connection_upgrade = true;
        break;
    case H_KEY: {
        /* Optional whitespace around a field value is not part of it. */
        const char *v = r->val;
        size_t n = r->val_len;
        while (n > 0 && (v[0] == ' ' || v[0] == '\t')) {
            v++;
            n--;
        }
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        r->key_count++;
        r->key_valid = !r->val_long && key_is_valid(v, n);
        if (r->key_valid) {
            memcpy(r->key, v, n);
            r->key[n] = '\0';
        }
        break;
    }
    case H_VERSION:
        r->version_seen = true;
        r->version_13 = !r->val_long && has_token(r->val, r->val_len, "13") &&
                        r->val_len <= 4 && strchr(r->val, ',') == NULL;
        break;
    default:
        break;
    }
    r->cur = H_NONE;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct net_req *r = req_of(p);
    if (len > NET_REQ_PATH_MAX - r->url_len) {
        r->error_status = 414;
        return 1;
    }
    memcpy(r->path + r->url_len, at, len);
    r->url_len += len;
    r->path[r->url_len] = '\0';
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct net_req *r = req_of(p);
    if (r->in_value) {
        finish_value(r);
        r->field_len = 0;
        r->field_long = false;
    }
    if (len > sizeof(r->field) - 1 - r->field_len) {
        r->field_long = true;
        return 0;
    }
    lower_copy(r->field + r->field_len, at, len);
    r->field_len += len;
    r->field[r->field_len] = '\0';
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct net_req *r = req_of(p);
    if (!r->in_value) {
        r->in_value = true;
        r->val_len = 0;
        r->val_long = false;
        r->cur = H_NONE;
        if (!r->field_long) {
            if (strcmp(r->field, "upgrade") == 0)
                r->cur = H_UPGRADE;
            else if (strcmp(r->field, "connection") == 0)
                r->cur = H_CONNECTION;
            else if (strcmp(r->field, "sec-websocket-key") == 0)
                r->cur = H_KEY;
            else if (strcmp(r->field, "sec-websocket-version") == 0)
                r->cur = H_VERSION;
        }
    }
    if (r->cur == H_NONE)
        return 0;
    if (len > NET_REQ_VALUE_MAX - r->val_len) {
        r->val_long = true;
        return 0;
    }
    memcpy(r->val + r->val_len, at, len);
    r->val_len += len;
    r->val[r->val_len] = '\0';
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct net_req *r = req_of(p);
    finish_value(r);
    r->headers_done = true;
    /* content_length is ULLONG_MAX when the header is absent. */
    if (p->content_length != UINT64_MAX && p->content_length > NET_REQ_BODY_DISCARD_MAX) {
        r->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    PL_UNUSED(at);
    struct net_req *r = req_of(p);
    r->body_bytes += len;
    if (r->body_bytes > NET_REQ_BODY_DISCARD_MAX) {
        r->error_status = 413;
        return 1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct net_req *r = req_of(p);
    r->complete = true;
    /* Stop right after this request so pipelined bytes stay with the caller. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void net__req_init(struct net_req *r, size_t max_header)
{
    memset(r, 0, sizeof(*r));
    r->max_header = max_header;
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

void net__req_reset(struct net_req *r)
{
    net__req_init(r, r->max_header);
}

/* Turns the raw request target into its path; false if it is not a URL. */
static bool extract_path(struct net_req *r)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url_len == 0 ||
        http_parser_parse_url(r->path, r->url_len, r->parser.method == HTTP_CONNECT, &u) != 0)
        return false;
    if (!(u.field_set & (1u << UF_PATH))) {
        r->path[0] = '/';
        r->path[1] = '\0';
        return true;
    }
    size_t off = u.field_data[UF_PATH].off;
    size_t len = u.field_data[UF_PATH].len;
    memmove(r->path, r->path + off, len);
    r->path[len] = '\0';
    return true;
}

enum net_req_result net__req_feed(struct net_req *r, const char *data, size_t len, size_t *used)
{
    *used = 0;
    while (len > 0) {
        size_t chunk = len;
        if (!r->headers_done) {
            size_t allow = r->max_header > r->head_bytes ? r->max_header - r->head_bytes : 0;
            if (allow == 0) {
                r->error_status = 431;
                return NET_REQ_ERROR;
            }
            chunk = PL_MIN(chunk, allow);
        }
        size_t n = http_parser_execute(&r->parser, &settings, data, chunk);
        if (!r->headers_done)
            r->head_bytes += n;
        data += n;
        len -= n;
        *used += n;
        if (r->complete) {
            snprintf(r->method, sizeof(r->method), "%s",
                     http_method_str((enum http_method)r->parser.method));
            r->keep_alive = http_should_keep_alive(&r->parser) != 0;
            if (!extract_path(r)) {
                r->error_status = 400;
                return NET_REQ_ERROR;
            }
            return NET_REQ_DONE;
        }
        if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK || n < chunk) {
            if (r->error_status == 0)
                r->error_status = 400;
            return NET_REQ_ERROR;
        }
    }
    if (!r->headers_done && r->head_bytes >= r->max_header) {
        r->error_status = 431;
        return NET_REQ_ERROR;
    }
    return NET_REQ_MORE;
}

bool net__req_is_upgrade(const struct net_req *r)
{
    return r->parser.upgrade != 0;
}

enum net_req_kind net__req_upgrade(const struct net_req *r, int *status)
{
    if (strcmp(r->path, NET_REQ_WS_PATH) != 0 || r->parser.method != HTTP_GET)
        return NET_REQ_PLAIN;
    if (!r->upgrade_websocket || !r->connection_upgrade ||
        (r->parser.http_major == 1 && r->parser.http_minor == 0) || r->parser.http_major < 1) {
        *status = 400;
        return NET_REQ_REJECT;
    }
    if (!r->version_13) {
        *status = 426;
        return NET_REQ_REJECT;
    }
    if (r->key_count != 1 || !r->key_valid) {
        *status = 400;
        return NET_REQ_REJECT;
    }
    return NET_REQ_UPGRADE;
}
