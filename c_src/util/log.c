/* The log hook: levels, the handler and the default format.  See
 * cnode/log.h for the contract and util/log.h for the library's side. */
#include "util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static _Atomic int log_level = CN_LOG_DEFAULT_LEVEL;

/* Events hold the lock for reading while the handler runs, and a new
 * handler takes it for writing: so when cn_log_set_handler returns, the
 * old handler runs nowhere and its arg may go. */
static pthread_rwlock_t hook_lock = PTHREAD_RWLOCK_INITIALIZER;
static cn_log_fn hook_fn; /* NULL: the default, stderr */
static void *hook_arg;

static const char *const level_names[] = {NULL, "error", "warning", "info",
                                          "debug"};

static bool valid_level(int level) {
  return level >= CN_LOG_ERROR && level <= CN_LOG_DEBUG;
}

const char *cn_log_level_name(cn_log_level level) {
  return valid_level((int)level) ? level_names[level] : "?";
}

int cn_log_level_parse(const char *name, cn_log_level *level) {
  int l;
  if (!name || !level)
    return CN_EINVAL;
  for (l = CN_LOG_ERROR; l <= CN_LOG_DEBUG; l++) {
    if (strcasecmp(name, level_names[l]) == 0) {
      *level = (cn_log_level)l;
      return 0;
    }
  }
  return CN_EINVAL;
}

int cn_log_set_level(cn_log_level level) {
  if (!valid_level((int)level))
    return CN_EINVAL;
  atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
  return 0;
}

cn_log_level cn_log_get_level(void) {
  return (cn_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool cn__log_enabled(cn_log_level level) {
  return valid_level((int)level) &&
         (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void cn_log_set_handler(cn_log_fn fn, void *arg) {
  pthread_rwlock_wrlock(&hook_lock);
  hook_fn = fn;
  hook_arg = fn ? arg : NULL;
  pthread_rwlock_unlock(&hook_lock);
}

/* ---- The default format ----------------------------------------------- */

/* Appends to buf (cap bytes) at *len, counting what does not fit, as
 * snprintf does.  With clean, control characters become '?'. */
static void put(char *buf, size_t cap, size_t *len, const char *s, bool clean) {
  for (; *s; s++, (*len)++) {
    unsigned char c = (unsigned char)*s;
    if (clean && (c < 0x20 || c == 0x7f))
      c = '?';
    if (*len + 1 < cap)
      buf[*len] = (char)c;
  }
}

size_t cn_log_format(const cn_log_event *ev, char *buf, size_t cap) {
  char stamp[64];
  struct tm tm;
  int64_t us = ev->time_us;
  /* Floor division, so that a time before 1970 still reads right. */
  time_t secs = (time_t)(us / 1000000 - (us % 1000000 < 0));
  long ms = (long)((us % 1000000 + 1000000) % 1000000 / 1000);
  size_t len = 0;

  if (gmtime_r(&secs, &tm) == NULL ||
      strftime(stamp, sizeof(stamp) - 8, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
    snprintf(stamp, sizeof(stamp), "%s", "0000-00-00T00:00:00");
  snprintf(stamp + strlen(stamp), 8, ".%03ldZ", ms);
  put(buf, cap, &len, stamp, false);
  put(buf, cap, &len, " ", false);
  put(buf, cap, &len, cn_log_level_name(ev->level), false);
  put(buf, cap, &len, " ", false);
  if (ev->domain && ev->domain[0]) {
    put(buf, cap, &len, ev->domain, true);
    put(buf, cap, &len, ": ", false);
  }
  put(buf, cap, &len, ev->text ? ev->text : "", true);
  put(buf, cap, &len, "\n", false);
  if (cap > 0)
    buf[len < cap ? len : cap - 1] = '\0';
  return len;
}

/* One fwrite of the whole line: stdio's lock keeps lines whole when
 * several threads log at once. */
static void to_stderr(const cn_log_event *ev) {
  char line[CN_LOG_MAX_TEXT + 256];
  size_t n = cn_log_format(ev, line, sizeof(line));
  if (n >= sizeof(line)) { /* cut: keep the newline */
    n = sizeof(line) - 1;
    line[n - 1] = '\n';
  }
  fwrite(line, 1, n, stderr);
}

/* ---- Events ----------------------------------------------------------- */

void cn__logv(struct cn_runtime *rt, cn_log_level level, const char *domain,
              const char *fmt, va_list ap) {
  char text[CN_LOG_MAX_TEXT + 1];
  struct timespec now;
  cn_log_event ev;

  vsnprintf(text, sizeof(text), fmt, ap);
  clock_gettime(CLOCK_REALTIME, &now);
  ev.level = level;
  ev.domain = domain ? domain : "";
  ev.text = text;
  ev.time_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
  ev.rt = rt;
  pthread_rwlock_rdlock(&hook_lock);
  if (hook_fn)
    hook_fn(&ev, hook_arg);
  else
    to_stderr(&ev);
  pthread_rwlock_unlock(&hook_lock);
}

void cn__logf(struct cn_runtime *rt, cn_log_level level, const char *domain,
              const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  cn__logv(rt, level, domain, fmt, ap);
  va_end(ap);
}

void cn_log(cn_log_level level, const char *domain, const char *fmt, ...) {
  va_list ap;
  if (!fmt || !cn__log_enabled(level))
    return;
  va_start(ap, fmt);
  cn__logv(NULL, level, domain, fmt, ap);
  va_end(ap);
}
