/* SPDX-License-Identifier: MIT */
/* The known_servers pin file; see known.h. */
#include "known.h"
#include "common/err.h"
#include "home.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/banned.h"

/* If line (len bytes, no newline) is hostport's entry, returns true and
 * points *hex at its fingerprint field. */
static bool line_is_for(const char *line, size_t len, const char *hostport, const char **hex,
                        size_t *hex_len)
{
    size_t hp = strlen(hostport);
    if (len <= hp || memcmp(line, hostport, hp) != 0 || line[hp] != ' ')
        return false;
    *hex = line + hp + 1;
    *hex_len = len - hp - 1;
    return true;
}

int known_check(const char *path, const char *hostport, const uint8_t fp[KNOWN_FP_LEN])
{
    char *buf;
    size_t len;
    int err = home_read_file(path, &buf, &len);
    if (err)
        return err;
    err = PARLEY_ENOTFOUND;
    for (char *line = buf; line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(buf + len - line);
        const char *hex;
        size_t hex_len, bin_len;
        uint8_t pin[KNOWN_FP_LEN];
        if (line_is_for(line, n, hostport, &hex, &hex_len)) {
            if (hex_len == 2 * KNOWN_FP_LEN &&
                sodium_hex2bin(pin, sizeof(pin), hex, hex_len, NULL, &bin_len, NULL) == 0 &&
                bin_len == KNOWN_FP_LEN && sodium_memcmp(pin, fp, KNOWN_FP_LEN) == 0)
                err = 0;
            else
                err = PARLEY_ECERT_CHANGED;
            break;
        }
        line += n + 1;
    }
    free(buf);
    return err;
}

int known_add(const char *path, const char *hostport, const uint8_t fp[KNOWN_FP_LEN])
{
    char *old = NULL, *out;
    size_t old_len = 0, n = 0;
    if (!*hostport || strpbrk(hostport, " \n\r"))
        return PARLEY_EINVAL;
    int err = home_read_file(path, &old, &old_len);
    if (err == PARLEY_ENOTFOUND)
        err = 0;
    if (err)
        return err;
    size_t hp = strlen(hostport);
    out = malloc(old_len + hp + 2 * KNOWN_FP_LEN + 4);
    if (!out) {
        free(old);
        return PARLEY_ENOMEM;
    }
    for (char *line = old; line && line < old + old_len;) {
        char *nl = memchr(line, '\n', (size_t)(old + old_len - line));
        size_t ln = nl ? (size_t)(nl - line) : (size_t)(old + old_len - line);
        const char *hex;
        size_t hex_len;
        if (ln > 0 && !line_is_for(line, ln, hostport, &hex, &hex_len)) {
            memcpy(out + n, line, ln);
            n += ln;
            out[n++] = '\n';
        }
        line += ln + 1;
    }
    memcpy(out + n, hostport, hp);
    n += hp;
    out[n++] = ' ';
    sodium_bin2hex(out + n, 2 * KNOWN_FP_LEN + 1, fp, KNOWN_FP_LEN);
    n += 2 * KNOWN_FP_LEN;
    out[n++] = '\n';
    err = home_write_file(path, out, n);
    free(out);
    free(old);
    return err;
}
