/* The log hook's side for the library itself (see cnode/log.h).  The
 * runtime's cn__log and the distribution layer's cn__dist_log rate-limit
 * their events and then hand them to cn__logv; nothing in libcnode writes
 * to stderr otherwise. */
#ifndef CN_UTIL_LOG_H
#define CN_UTIL_LOG_H

#include <cnode/log.h>
#include <stdarg.h>
#include <stdbool.h>

/* True when events at level pass the level set with cn_log_set_level.
 * Checked before a rate limit counts an event, so that dropped levels do
 * not use up the budget.  Thread-safe. */
bool cn__log_enabled(cn_log_level level);

/* Formats one event and hands it to the handler (no level check, no rate
 * limit: the caller has done both).  rt may be NULL.  Thread-safe. */
void cn__logv(struct cn_runtime *rt, cn_log_level level, const char *domain,
              const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* The same with a variable argument list. */
void cn__logf(struct cn_runtime *rt, cn_log_level level, const char *domain,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif /* CN_UTIL_LOG_H */
