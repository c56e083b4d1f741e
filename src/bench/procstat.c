/* SPDX-License-Identifier: MIT */
/* The server's CPU time and memory, read from /proc (Linux). */
#include "bench.h"
#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/banned.h"

static int read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? PARLEY_ENOTFOUND : PARLEY_EIO;
    size_t n = fread(buf, 1, cap - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return PARLEY_EIO;
    buf[n] = '\0';
    return 0;
}

static uint64_t status_kib(const char *status, const char *key)
{
    const char *p = strstr(status, key);
    if (!p)
        return 0;
    return strtoull(p + strlen(key), NULL, 10);
}

int procstat_read(int pid, struct procstat *out)
{
    char path[64], buf[4096];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    int rc = read_file(path, buf, sizeof(buf));
    if (rc)
        return rc;
    /* The command name may hold spaces and parentheses: fields start after
     * the last ')'. utime and stime are fields 14 and 15, that is the 12th
     * and 13th after it. */
    const char *p = strrchr(buf, ')');
    if (!p)
        return PARLEY_EIO;
    p++;
    unsigned long long ticks[2] = {0, 0};
    for (int field = 3; field <= 15 && *p; field++) {
        while (*p == ' ')
            p++;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (field == 14)
            ticks[0] = v;
        else if (field == 15)
            ticks[1] = v;
        p = end;
        while (*p && *p != ' ')
            p++;
    }
    long hz = sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    rc = read_file(path, buf, sizeof(buf));
    if (rc)
        return rc;
    out->ok = true;
    out->cpu_s = (double)(ticks[0] + ticks[1]) / (double)(hz > 0 ? hz : 100);
    out->rss_kib = status_kib(buf, "VmRSS:");
    out->hwm_kib = status_kib(buf, "VmHWM:");
    return 0;
}
