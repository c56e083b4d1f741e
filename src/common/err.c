/* SPDX-License-Identifier: MIT */
/* Names and texts of the error table in err.h. */
#include "err.h"

#include <string.h>

const char *err_text(int code)
{
    switch (code) {
    case 0:
        return "success";
#define X(name, num, text)                                                                         \
    case -(num):                                                                                   \
        return text;
        PARLEY_ERRNO_MAP(X)
#undef X
    default:
        return "unknown error";
    }
}

const char *err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define X(name, num, text)                                                                         \
    case -(num):                                                                                   \
        return #name;
        PARLEY_ERRNO_MAP(X)
#undef X
    default:
        return "UNKNOWN";
    }
}

unsigned err_to_wire(int code)
{
    if (code >= 0)
        return 0;
    const char *name = err_name(code);
    /* Codes outside the table never reach the wire as arbitrary numbers. */
    return strcmp(name, "UNKNOWN") == 0 ? 0u - (unsigned)PARLEY_EINTERNAL : 0u - (unsigned)code;
}

int err_from_wire(unsigned wire)
{
    switch (wire) {
    case 0:
        return 0;
#define X(name, num, text)                                                                         \
    case num:                                                                                      \
        return -(num);
        PARLEY_ERRNO_MAP(X)
#undef X
    default:
        return PARLEY_EPROTO;
    }
}
