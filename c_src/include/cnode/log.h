/* cnode: the log hook.
 *
 * Everything libcnode has to say goes through one hook, never straight to
 * stderr: the refusals and dropped messages of the runtime and of the
 * distribution layer, the node helper's start and stop (cnode/node.h), and
 * whatever a program logs with cn_log().  Each event has a level, a domain
 * (who speaks: "cnode" for the runtime and the node helper, "cnode dist"
 * for the distribution layer) and one line of text.
 *
 * The default handler writes one line per event to stderr, UTC time to the
 * millisecond first, then the level, then the domain:
 *
 *   2026-12-01T06:30:00.123Z warning cnode dist: connection to a@h closed: ...
 *
 * so that what follows the level is exactly the line earlier versions
 * wrote.  cn_log_set_handler() replaces it (to send events to syslog, a
 * file, or the program's own logger), cn_log_set_level() drops the events
 * below a level before any text is formatted.  Both are process-wide, for
 * every runtime in the program, like the process's stderr they replace.
 *
 * The library's own events are rate-limited where a peer could provoke
 * them (at most 20 lines a second per runtime and per distribution layer;
 * the rest are counted and reported in one line), so that a flood of bad
 * input cannot fill a disk through the log.  cn_log() is not rate-limited.
 */
#ifndef CNODE_LOG_H
#define CNODE_LOG_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels, most severe first (OTP logger's names).  A level set with
 * cn_log_set_level passes the events at that level and the more severe
 * ones. */
typedef enum cn_log_level {
  CN_LOG_ERROR = 1,   /* the program cannot go on as asked */
  CN_LOG_WARNING = 2, /* something was refused, dropped or closed */
  CN_LOG_INFO = 3,    /* start, stop, files created */
  CN_LOG_DEBUG = 4    /* detail for finding a fault */
} cn_log_level;

#define CN_LOG_DEFAULT_LEVEL CN_LOG_INFO
#define CN_LOG_MAX_TEXT 1023 /* bytes of text; longer texts are cut */

struct cn_runtime;

/* One event, as a handler gets it.  Everything it points to is valid only
 * during the handler's call. */
typedef struct cn_log_event {
  cn_log_level level;
  const char *domain;    /* "cnode", "cnode dist", or a program's own;
                          * never NULL (cn_log's NULL becomes "") */
  const char *text;      /* one line, no newline, NUL-terminated */
  int64_t time_us;       /* wall-clock time, microseconds since
                          * 1970-01-01T00:00:00Z */
  struct cn_runtime *rt; /* the runtime it concerns, or NULL (cn_log,
                          * and the node helper before its runtime) */
} cn_log_event;

/* A log handler.  It may run on any thread (a scheduler, the distribution
 * loop's, or a program's own), and on several at once, so it must be
 * thread-safe.  It must not block for long: the runtime's events come
 * from its scheduler threads.  It must not call cn_log_set_handler. */
typedef void (*cn_log_fn)(const cn_log_event *ev, void *arg);

/* Makes fn(ev, arg) the handler of every event from now on; fn NULL
 * restores the default (stderr).  When this returns, no call of the old
 * handler is still running, so its arg may be freed.  Thread-safe. */
CN_EXTERN void cn_log_set_handler(cn_log_fn fn, void *arg);

/* Passes the events at level and the more severe ones, and drops the
 * others before their text is formatted.  The default is
 * CN_LOG_DEFAULT_LEVEL (info).  Returns 0, or CN_EINVAL for a value
 * that is not a cn_log_level (the level is then left as it was).
 * Thread-safe. */
CN_EXTERN int cn_log_set_level(cn_log_level level);

/* The level set now.  Thread-safe. */
CN_EXTERN cn_log_level cn_log_get_level(void);

/* Logs one event: the text made from fmt as printf does (cut to
 * CN_LOG_MAX_TEXT bytes), for domain (NULL for none), at level.  Does
 * nothing when level is not passed (or not a cn_log_level).  Not
 * rate-limited.  Thread-safe; may be called from inside callbacks. */
CN_EXTERN void cn_log(cn_log_level level, const char *domain, const char *fmt,
                      ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Formats ev as the default handler writes it, "TIME LEVEL DOMAIN: TEXT"
 * with a newline (without the "DOMAIN: " when the domain is empty), into
 * buf (cap bytes, NUL-terminated, cut when it does not fit).  Control
 * characters in the text become '?', so that one event is one line.
 * Returns the length of the whole line (as snprintf does: the line was
 * cut when that is >= cap).  For a handler that writes elsewhere in the
 * same format.  Thread-safe. */
CN_EXTERN size_t cn_log_format(const cn_log_event *ev, char *buf, size_t cap);

/* The name of a level: "error", "warning", "info" or "debug" ("?" for
 * any other value).  Thread-safe. */
CN_EXTERN const char *cn_log_level_name(cn_log_level level);

/* Reads a level's name, as cn_log_level_name writes it, into *level.
 * Returns 0 or CN_EINVAL (and leaves *level alone).  For a program's
 * --log-level option.  Thread-safe. */
CN_EXTERN int cn_log_level_parse(const char *name, cn_log_level *level);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_LOG_H */
