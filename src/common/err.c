/* SPDX-License-Identifier: MIT */
/* Names and texts of the error table in err.h. */
#include "err.h"

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
    return code < 0 ? (unsigned)-code : 0;
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
