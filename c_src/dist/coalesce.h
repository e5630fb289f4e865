/* Coalescing: how long the dist loop holds still after a busy turn.
 *
 * Each wake-up of the dist loop costs a sleep, a wake-up, a read and a
 * write (about 30 us of CPU on this VM at 16 callers, 70% of it in the
 * kernel), and a BEAM client that keeps many calls in flight sends its
 * requests a few at a time, so the loop wakes every one or two calls.
 *
 * After a turn that handled several frames (CN__CO_MIN_FRAMES, more than
 * one caller sends at once) and wrote replies, with no process waiting to
 * run on its scheduler, the loop may hold still for tens or hundreds of
 * microseconds: a nanosleep, after the turn's writes are out, with the
 * thread's timer slack at 1 ns.  The requests that arrive meanwhile are
 * then read, handled and answered together, in one read and one write,
 * and the CPU the loop does not use goes to the callers (on a machine
 * where they share the cores, they are what limits the rate).  It is
 * interrupt moderation, as network cards do it.
 *
 * Holding costs latency, so the hold adapts.  The controller counts the
 * frames the loop handles per window (CN__CO_WINDOW_NS) and climbs: it
 * tries the next hold up or down for one window and keeps it when the
 * rate rose by CN__CO_UP_GAIN (going up) or did not fall (going down, so
 * that a flat rate walks down to the shorter hold).  A longer hold that
 * did not lower the rate, but did not raise it enough, leads to a try of
 * the one beyond it before the climb turns back: at 16 callers 50 and
 * 100 us often gain about the same and 200 us much more, and a one-step
 * climb stalled at 50.  The rate it compares
 * with is the kept hold's, averaged over its last windows, as one
 * window's rate is noisy (about 20% on this VM).  A failed try is not
 * repeated for a while (1, 2, 4 ... 16 windows).  Under light load (fewer
 * than CN__CO_LIGHT_FRAMES frames in a window, or a window's worth of
 * time without a turn) it holds nothing, and starts again from there.  A single
 * caller never gains from a hold (its next request waits for our reply),
 * and its turns are too small for one anyway: a demonitor, a monitor and
 * a request at most.  That holds for a large request too, because a
 * "frame" here is a signal, and a message in fragments counts once
 * (dist/conn.c); counted by pieces, one caller's 64 KiB echoes (a
 * monitor, two fragments, the last demonitor) were held now and then,
 * and whole rounds of them ran at half speed.
 *
 * One-way traffic (casts, plain sends) is the other case.  A sender that
 * streams messages wakes the loop with nearly every write it makes, and
 * pays for that wake-up itself (the kernel wakes the reader in the
 * sender's write): reading as soon as bytes arrive made a BEAM client
 * spend about 10 us of CPU per cast, against 4 us when the loop held
 * still between reads.  A window in which the loop read at least
 * CN__CO_LIGHT_FRAMES frames and at most one turn in CN__CO_ONEWAY wrote
 * anything is one-way; in the next window a turn that read
 * CN__CO_MIN_FRAMES frames or more and wrote nothing holds for the
 * longest hold allowed (the rate of one-way streams rose with the hold,
 * up to 400 us and beyond, and nobody waits for an answer).  Turns that
 * write are left to the controller.
 *
 * This is the pure state machine; the dist loop (node.c) feeds it and
 * sleeps.  Dist loop only. */
#ifndef CN_DIST_COALESCE_H
#define CN_DIST_COALESCE_H

#include <stdbool.h>
#include <stdint.h>

#define CN__CO_WINDOW_NS 50000000ull /* 50 ms */
#define CN__CO_LIGHT_FRAMES 250      /* per window: below, no hold */
#define CN__CO_MIN_FRAMES 4          /* per turn, for a hold after it */
#define CN__CO_UP_GAIN 1.05          /* a longer hold must win 5% */
#define CN__CO_DOWN_LOSS 1.00        /* a shorter one must not lose */
#define CN__CO_MAX_WAIT 16           /* windows between failed tries */
#define CN__CO_NLEVELS 5             /* 0, 50, 100, 200, 400 us */
#define CN__CO_ONEWAY 8              /* one writing turn in 8, at most */

typedef struct cn__coalesce {
  uint8_t top;        /* the highest level allowed by max_us */
  uint8_t level;      /* the kept hold (index into the levels) */
  uint8_t active;     /* the hold in use: level, or the one on trial */
  uint8_t probing;    /* this window tries active against base */
  int8_t dir;         /* +1: the next try is longer; -1: shorter */
  uint8_t stride;     /* levels between the try and the kept hold */
  uint8_t wait;       /* windows to go before the next try */
  uint8_t backoff;    /* failed tries in a row */
  uint8_t oneway;     /* the last window was one-way */
  uint64_t win_start; /* ns, CLOCK_MONOTONIC (uv_hrtime) */
  uint64_t last_turn; /* ns, the turn before */
  uint64_t win_frames;
  uint32_t win_turns; /* turns that handled frames, this window */
  uint32_t win_wrote; /* those of them that wrote */
  double base;        /* frames per second at level, last window */
} cn__coalesce;

/* Starts k with holds of at most max_us (0: never hold).  now is
 * uv_hrtime(). */
void cn__coalesce_init(cn__coalesce *k, unsigned max_us, uint64_t now);

/* The hold after a turn that wrote, in microseconds (0: none). */
unsigned cn__coalesce_hold_us(const cn__coalesce *k);

/* The hold after a turn that read frames and wrote nothing: the longest
 * allowed while traffic is one-way, else 0. */
unsigned cn__coalesce_read_hold_us(const cn__coalesce *k);

/* A turn of the loop handled frames, and wrote or not; now is
 * uv_hrtime().  Closes the window when it has run CN__CO_WINDOW_NS, and
 * decides the next holds.  A turn after CN__CO_WINDOW_NS or more without
 * one ends the window as light load, whatever it held, and starts the
 * next: the rate of a window that spans an idle stretch is mostly the
 * idle stretch (a burst, 60 ms of nothing, then a turn: a hundredth of
 * the burst's rate, which halved the kept rate and let the next try
 * win). */
void cn__coalesce_turn(cn__coalesce *k, uint64_t now, unsigned frames,
                       bool wrote);

/* The decision at the end of a window: frames were handled in it, at
 * rate frames per second.  Exposed for the tests. */
void cn__coalesce_window(cn__coalesce *k, uint64_t frames, double rate);

#endif
