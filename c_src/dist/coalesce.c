/* Coalescing: the hold after a busy turn of the dist loop (coalesce.h). */
#include "coalesce.h"

static const uint16_t levels[CN__CO_NLEVELS] = {0, 50, 100, 200, 400};

void cn__coalesce_init(cn__coalesce *k, unsigned max_us, uint64_t now) {
  uint8_t top = 0;
  while (top + 1 < CN__CO_NLEVELS && levels[top + 1] <= max_us)
    top++;
  *k = (cn__coalesce){.top = top, .dir = 1, .win_start = now, .last_turn = now};
}

unsigned cn__coalesce_hold_us(const cn__coalesce *k) {
  return levels[k->active];
}

unsigned cn__coalesce_read_hold_us(const cn__coalesce *k) {
  return k->oneway ? levels[k->top] : 0;
}

/* Puts the hold stride levels away in dir on trial.  Returns false past
 * an end. */
static bool try_at(cn__coalesce *k, int stride) {
  int t = k->level + k->dir * stride;
  if (t < 0 || t > k->top)
    return false;
  k->active = (uint8_t)t;
  k->probing = 1;
  k->stride = (uint8_t)stride;
  return true;
}

static bool try_next(cn__coalesce *k) { return try_at(k, 1); }

void cn__coalesce_window(cn__coalesce *k, uint64_t frames, double rate) {
  if (k->top == 0)
    return;
  if (frames < CN__CO_LIGHT_FRAMES) {
    k->base = 0;
    k->level = k->active = 0;
    k->probing = 0;
    k->dir = 1;
    k->wait = k->backoff = 0;
    return;
  }
  if (k->probing) {
    bool better = k->dir > 0 ? rate > k->base * CN__CO_UP_GAIN
                             : rate >= k->base * CN__CO_DOWN_LOSS;
    k->probing = 0;
    if (better) {
      /* Keep it, and go on the same way at once. */
      k->level = k->active;
      k->base = rate;
      k->backoff = 0;
      if (!try_next(k)) {
        k->dir = (int8_t)-k->dir;
        k->wait = 1;
      }
      return;
    }
    k->active = k->level;
    /* A longer hold that did no worse may sit on a flat stretch before
     * the rise (each wake-up then gathers about as many requests): try
     * the one beyond it next, before turning back. */
    if (k->dir > 0 && k->stride == 1 && rate >= k->base * CN__CO_DOWN_LOSS &&
        try_at(k, 2))
      return;
    k->dir = (int8_t)-k->dir;
    k->wait = (uint8_t)(1u << k->backoff);
    if (k->wait > CN__CO_MAX_WAIT)
      k->wait = CN__CO_MAX_WAIT;
    if ((1u << k->backoff) < CN__CO_MAX_WAIT)
      k->backoff++;
    return;
  }
  /* The kept hold's rate: half this window, half those before, as a
   * window's rate is noisy (about 20% here). */
  k->base = k->base > 0 ? (k->base + rate) / 2 : rate;
  if (k->wait > 0) {
    k->wait--;
    return;
  }
  if (!try_next(k)) {
    k->dir = (int8_t)-k->dir;
    (void)try_next(k);
  }
}

void cn__coalesce_turn(cn__coalesce *k, uint64_t now, unsigned frames,
                       bool wrote) {
  uint64_t ns;
  if (now - k->last_turn >= CN__CO_WINDOW_NS) {
    /* Idle for a window or more: light load, whatever came before. */
    k->oneway = 0;
    cn__coalesce_window(k, 0, 0.0);
    k->win_start = now;
    k->win_frames = 0;
    k->win_turns = k->win_wrote = 0;
  }
  k->last_turn = now;
  k->win_frames += frames;
  k->win_turns++;
  k->win_wrote += wrote;
  ns = now - k->win_start;
  if (ns < CN__CO_WINDOW_NS)
    return;
  k->oneway = k->top > 0 && k->win_frames >= CN__CO_LIGHT_FRAMES &&
              (uint64_t)k->win_wrote * CN__CO_ONEWAY <= k->win_turns;
  k->win_turns = k->win_wrote = 0;
  cn__coalesce_window(k, k->win_frames,
                      (double)k->win_frames * 1e9 / (double)ns);
  k->win_start = now;
  k->win_frames = 0;
}
