/* The format cache: cn_build and cn_match compile a format once (build.c,
 * match.c) and keep the result here, per thread, keyed by the format's
 * address.  Formats are almost always string literals, so the address
 * finds the entry; a copy of the text tells a reused address (a char
 * array rewritten) from the format compiled, so that the cache never
 * changes a result.  A format in read-only memory that stays mapped for
 * the whole run (a string literal of the program or of libcnode) cannot
 * change, so its entry skips that compare; formats anywhere else, such as
 * the literals of an object that dlclose may unload and another object
 * may replace at the same address, are compared on every use.
 *
 * Each thread has its own table: no locks, no atomics, and nothing for
 * TSan to see.  The table (fmt.h) is 4-way set associative (CN__FC_SETS x
 * CN__FC_WAYS entries, least recently used out), so that a few hot formats
 * never evict each other; an entry holds a format of at most CN__PROG_MAX_TEXT
 * bytes, which bounds a thread's memory.  The table is freed when its thread
 * exits.
 */
#include <pthread.h>
#include <stdint.h>
#if defined(__linux__)
#include <link.h> /* dl_iterate_phdr */
#define HAVE_PHDR 1
#endif
#include <stdlib.h>
#include <string.h>

#include "fmt.h"

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_key_ok;
_Thread_local cn__fcache *cn__fcache_tls;

/* The read-only segments of the objects that are never unloaded: the
 * program itself (dl_iterate_phdr's first object) and the object holding
 * this code.  Found once, before any cache exists. */
#define MAX_FIXED 8
static struct { uintptr_t lo, hi; } fixed[MAX_FIXED];
static size_t nfixed;

#if HAVE_PHDR
static int add_fixed(struct dl_phdr_info *info, size_t size, void *arg) {
  uintptr_t self = (uintptr_t)&cn__fcache_lookup;
  int *first = arg, ours = *first;
  size_t i;
  (void)size;

  *first = 0;
  for (i = 0; !ours && i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    ours = ph->p_type == PT_LOAD && self - lo < ph->p_memsz;
  }
  for (i = 0; ours && i < info->dlpi_phnum && nfixed < MAX_FIXED; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && !(ph->p_flags & PF_W) && ph->p_memsz != 0) {
      fixed[nfixed].lo = info->dlpi_addr + ph->p_vaddr;
      fixed[nfixed].hi = fixed[nfixed].lo + ph->p_memsz;
      nfixed++;
    }
  }
  return 0;
}
#endif

static void cache_init_key(void);

int cn__fcache_fixed(const char *p, size_t n) {
  uintptr_t a = (uintptr_t)p;
  size_t i;
  if (pthread_once(&cache_once, cache_init_key) != 0)
    return 0;
  for (i = 0; i < nfixed; i++)
    if (a >= fixed[i].lo && a < fixed[i].hi && n <= fixed[i].hi - a)
      return 1;
  return 0;
}

static void cache_flush(cn__fcache *c) {
  size_t i, j;
  for (i = 0; i < CN__FC_SETS; i++)
    for (j = 0; j < CN__FC_WAYS; j++) {
      free(c->set[i][j].prog);
      c->set[i][j] = (cn__fslot){NULL, 0, 0, NULL};
    }
}

static void cache_free(void *arg) {
  cache_flush(arg);
  free(arg);
  cn__fcache_tls = NULL; /* a later destructor may build: it starts again */
}

static void cache_init_key(void) {
#if HAVE_PHDR
  int first = 1;
  dl_iterate_phdr(add_fixed, &first);
#endif
  cache_key_ok = pthread_key_create(&cache_key, cache_free) == 0;
}

static cn__fcache *cache_new(void) {
  cn__fcache *c;
  if (pthread_once(&cache_once, cache_init_key) != 0 || !cache_key_ok)
    return NULL;
  if ((c = calloc(1, sizeof *c)) == NULL)
    return NULL;
  if (pthread_setspecific(cache_key, c) != 0) {
    free(c);
    return NULL;
  }
  return cn__fcache_tls = c;
}

void cn__fcache_enable(int on) {
  cn__fcache *c = cn__fcache_tls != NULL ? cn__fcache_tls : cache_new();
  if (c != NULL) {
    cache_flush(c);
    c->off = !on;
  }
}

const cn__prog *cn__fcache_lookup(cn__fcache *c, int which, const char *fmt) {
  cn__fslot *s, hit;
  size_t i;

  if (c == NULL && (c = cache_new()) == NULL)
    return NULL;
  if (c->off)
    return NULL;
  s = cn__fcache_set(c, which, fmt);
  for (i = 0; i < CN__FC_WAYS && s[i].prog != NULL; i++)
    if (s[i].key == fmt && s[i].which == which &&
        (s[i].fixed || strcmp(s[i].prog->text, fmt) == 0))
      break;
  if (i == CN__FC_WAYS || s[i].prog == NULL) {
    /* A miss: compile, and put the result in the least recently used
     * way.  A format too long to keep is interpreted each time. */
    cn__prog *p;
    size_t len = strnlen(fmt, CN__PROG_MAX_TEXT + 1);
    if (len > CN__PROG_MAX_TEXT)
      return NULL;
    p = which == CN__FC_BUILD ? cn__build_compile(fmt) : cn__match_compile(fmt);
    if (p == NULL)
      return NULL;
    i = CN__FC_WAYS - 1;
    free(s[i].prog);
    s[i] = (cn__fslot){fmt, which, cn__fcache_fixed(fmt, len + 1), p};
  }
  hit = s[i]; /* the way becomes the most recently used */
  memmove(s + 1, s, i * sizeof *s);
  s[0] = hit;
  return hit.prog->nops != 0 ? hit.prog : NULL;
}

/* ---- Writing programs ---------------------------------------------------- */

void cn__pgen_init(cn__pgen *g, const char *fmt) {
  g->fmt = fmt;
  g->len = strlen(fmt);
  g->nops = 0;
  g->bad = 0;
  g->full = 0;
  cn_buf_init_with(&g->pool, g->inl, sizeof g->inl);
  /* The text goes first, with its NUL: tokens that point into the
   * format point into this copy. */
  if (cn_buf_append(&g->pool, fmt, g->len + 1) != 0)
    g->bad = 1;
}

cn__tok *cn__pgen_op(cn__pgen *g, int kind, char c, const char *s, size_t n) {
  size_t off = 0;
  cn__tok *t;

  if (g->nops == CN__PROG_MAX_OPS) {
    g->full = 1;
    return NULL;
  }
  if (s != NULL && (uintptr_t)s - (uintptr_t)g->fmt <= g->len) {
    off = (size_t)(s - g->fmt);
  } else if (s != NULL) { /* unescaped text: keep a copy */
    off = g->pool.len;
    if (cn_buf_append(&g->pool, s, n) != 0)
      g->bad = 1;
  }
  g->off[g->nops] = off;
  t = &g->ops[g->nops++];
  *t = (cn__tok){.kind = kind, .c = c, .s = NULL, .n = n};
  return t;
}

cn__prog *cn__pgen_done(cn__pgen *g, int ok) {
  size_t ops = ok && !g->full ? g->nops : 0, i;
  size_t bytes = ops != 0 ? g->pool.len : g->len + 1; /* no literals */
  cn__prog *p = NULL;

  if (g->bad)
    goto done;
  if ((p = malloc(sizeof *p + ops * sizeof(cn__tok) + bytes)) == NULL)
    goto done;
  p->nops = ops;
  p->tuples = 0;
  p->text = (char *)(p->ops + ops);
  memcpy(p->text, g->pool.data, bytes);
  for (i = 0; i < ops; i++) {
    p->ops[i] = g->ops[i];
    p->ops[i].s = p->text + g->off[i];
  }
done:
  cn_buf_free(&g->pool);
  return p;
}
