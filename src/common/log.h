/* SPDX-License-Identifier: MIT */
/* Leveled, one-line-per-event logging for parleyd. Lines go to stderr as
 * "time level module key=value...". Never pass message content or keys. */
#ifndef PARLEY_COMMON_LOG_H
#define PARLEY_COMMON_LOG_H

#include "compiler.h"

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

extern int log_threshold; /* lines below this level are skipped */

/* Parse "debug|info|warn|error"; returns 0 and sets *out, or PARLEY_EINVAL. */
PL_NODISCARD int log_level_parse(const char *s, int *out);

void log_write(int level, const char *module, const char *fmt, ...) PL_PRINTF(3, 4);

#define log_at(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) >= log_threshold)                                                              \
            log_write((level), (module), __VA_ARGS__);                                             \
    } while (0)
#define log_debug(module, ...) log_at(LOG_LEVEL_DEBUG, module, __VA_ARGS__)
#define log_info(module, ...) log_at(LOG_LEVEL_INFO, module, __VA_ARGS__)
#define log_warn(module, ...) log_at(LOG_LEVEL_WARN, module, __VA_ARGS__)
#define log_error(module, ...) log_at(LOG_LEVEL_ERROR, module, __VA_ARGS__)

#endif
