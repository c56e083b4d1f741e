/* SPDX-License-Identifier: MIT */
/* UTF-8 validation follows the well-formed byte sequences of Unicode 15,
 * table 3-7. */
#include "text.h"
#include "err.h"

#include <stdint.h>
#include <string.h>

#include "banned.h"

int utf8_check(const char *str, size_t len, size_t *chars)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0)
            return PARLEY_EBAD_UTF8;
        if (c < 0x80) {
            i++;
            n++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return PARLEY_EBAD_UTF8;
        }
        if (len - i - 1 < need)
            return PARLEY_EBAD_UTF8;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return PARLEY_EBAD_UTF8;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return PARLEY_EBAD_UTF8;
        i += need + 1;
        n++;
    }
    *chars = n;
    return 0;
}

int username_normalize(const char *name, char out[USERNAME_MAX + 1])
{
    char tmp[USERNAME_MAX + 1];
    size_t n = 0;
    if (!name)
        return PARLEY_EBAD_USERNAME;
    if (*name == '@')
        name++;
    for (; *name; name++) {
        char c = *name;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return PARLEY_EBAD_USERNAME;
        if (n == USERNAME_MAX)
            return PARLEY_EBAD_USERNAME;
        tmp[n++] = c;
    }
    if (n < USERNAME_MIN)
        return PARLEY_EBAD_USERNAME;
    tmp[n] = '\0';
    memcpy(out, tmp, n + 1);
    return 0;
}
