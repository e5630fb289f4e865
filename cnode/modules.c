/* cnode: server modules in the node program.
 *
 * A module is a shared object with the described symbol cnode_module
 * (cnode/module.h).  At startup each module named by --load or by the
 * --config file is loaded, its callbacks registered under its name
 * (cn_server_register), and the server started under cnode_sup with
 * supervisor:start_child, registered under its name.
 *
 * cnode_code, a registered server, loads new versions while they run:
 *   {load, Path}       -> {ok, Module, Vsn} | {error, Reason}
 *       Loads the object beside the versions already loaded (a copy of
 *       the file is opened, so that a rebuilt file at the same path is a
 *       new version, as dlopen would otherwise hand back the old one).
 *       For a module already loaded, the new version becomes the one
 *       new starts use (cn_server_upgrade) and the one
 *       sys:change_code(Name, Module, OldVsn, Extra) moves a suspended
 *       server to.  A module not loaded before is registered, not
 *       started.
 *   which_modules      -> [{Module, Vsn, current | old, Users}]
 *       Users: the processes running that version now.
 *   {purge, Module}    -> {ok, Purged} | {error, not_loaded}
 *       Unloads the old versions of Module that no process runs; Purged
 *       counts them.  Versions still in use stay (purge again later).
 *
 * The shared objects get the node's cn_* functions from the program
 * itself, which exports them (see the Makefile's NODE_LDFLAGS).
 */
#include "modules.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- What to start ----------------------------------------------------- */

typedef struct wanted {
  struct wanted *next;
  char *path;
  char *name;    /* registered name; NULL: the module's */
  cn_buf args;   /* init's argument; empty: the module's default */
  char *restart; /* NULL: the module's default */
  long shutdown; /* ms; -1: the module's default */
} wanted;

static wanted *wanted_head, **wanted_tail = &wanted_head;

static wanted *wanted_new(const char *path) {
  wanted *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    return NULL;
  }
  w->shutdown = -1;
  *wanted_tail = w;
  wanted_tail = &w->next;
  return w;
}

int modules_add_path(const char *path) {
  return wanted_new(path) ? 0 : CN_ENOMEM;
}

/* ---- Loaded versions --------------------------------------------------- */

typedef struct version {
  struct version *next;
  void *dl;
  const cn_module *m;
  char *path;
} version;

static pthread_mutex_t versions_mu = PTHREAD_MUTEX_INITIALIZER;
static version *versions; /* newest first */
static unsigned copies;   /* copies of objects made so far */

/* Opens path (a copy of it when copy is set) and checks its description.
 * Returns the version, or NULL with why filled in. */
static version *open_object(const char *path, bool copy, char *why,
                            size_t cap) {
  char tmp[256];
  const cn_module *m;
  version *v;
  void *dl;

  if (copy) {
    /* dlopen keeps one copy of an object per path: a copy under a new
     * name makes a rebuilt file a new version. */
    int in = open(path, O_RDONLY | O_CLOEXEC), out;
    char buf[65536];
    ssize_t n = 0;
    if (in < 0) {
      snprintf(why, cap, "cannot open %s: %s", path, strerror(errno));
      return NULL;
    }
    snprintf(tmp, sizeof tmp, "%s/cnode-%ld-%u.so",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid(),
             ++copies);
    out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    while (out >= 0 && (n = read(in, buf, sizeof buf)) > 0)
      if (write(out, buf, (size_t)n) != n)
        n = -1;
    close(in);
    if (out < 0 || n < 0) {
      snprintf(why, cap, "cannot copy %s to %s: %s", path, tmp,
               strerror(errno));
      if (out >= 0)
        close(out), unlink(tmp);
      return NULL;
    }
    close(out);
  }
  dl = dlopen(copy ? tmp : path, RTLD_NOW | RTLD_LOCAL);
  if (copy)
    unlink(tmp); /* the mapping stays */
  if (!dl) {
    snprintf(why, cap, "%s", dlerror());
    return NULL;
  }
  m = dlsym(dl, CN_MODULE_SYMBOL);
  if (!m || m->abi != CN_MODULE_ABI || !m->name || !m->vsn || !m->ops ||
      !m->ops->name || strcmp(m->ops->name, m->name) != 0) {
    snprintf(why, cap,
             !m ? "%s: no symbol " CN_MODULE_SYMBOL
             : m->abi != CN_MODULE_ABI
                 ? "%s: built for another cnode/module.h (abi)"
                 : "%s: " CN_MODULE_SYMBOL " lacks a name, vsn or ops, or "
                   "ops->name is not its name",
             path);
    dlclose(dl);
    return NULL;
  }
  if (!(v = calloc(1, sizeof *v)) || !(v->path = strdup(path))) {
    free(v);
    dlclose(dl);
    snprintf(why, cap, "out of memory");
    return NULL;
  }
  v->dl = dl;
  v->m = m;
  return v;
}

/* The newest loaded version of module name, or NULL (under versions_mu). */
static version *newest(const char *name) {
  version *v;
  for (v = versions; v; v = v->next)
    if (strcmp(v->m->name, name) == 0)
      return v;
  return NULL;
}

/* Loads path as a version of its module: registers a new module, or
 * makes a known one's new version current.  Returns 0 with *out set, or
 * an error with why filled in. */
static int load(cn_runtime *rt, const char *path, bool copy, version **out,
                char *why, size_t cap) {
  version *v = open_object(path, copy, why, cap), *old;
  int rc;

  if (!v)
    return CN_EINVAL;
  pthread_mutex_lock(&versions_mu);
  old = newest(v->m->name);
  rc = old ? cn_server_upgrade(rt, v->m->ops)
           : cn_server_register(rt, v->m->ops);
  if (rc == 0) {
    v->next = versions;
    versions = v;
  }
  pthread_mutex_unlock(&versions_mu);
  if (rc != 0) {
    snprintf(why, cap, "%s: cannot register module %s: %s", path, v->m->name,
             cn_strerror(rc));
    dlclose(v->dl);
    free(v->path);
    free(v);
    return rc;
  }
  *out = v;
  return 0;
}

/* ---- Starting under the supervisor ------------------------------------- */

static int start_one(cn_runtime *rt, const char *sup, const wanted *w) {
  char why[512];
  cn_buf spec = CN_BUF_INIT, args = CN_BUF_INIT, reply = CN_BUF_INIT,
         text = CN_BUF_INIT;
  const cn_module *m;
  const char *name, *restart;
  version *v;
  int rc;

  if ((rc = load(rt, w->path, false, &v, why, sizeof why)) != 0) {
    cn_log(CN_LOG_ERROR, "cnode", "--load %s", why);
    return rc;
  }
  m = v->m;
  name = w->name ? w->name : m->name;
  restart = w->restart ? w->restart : m->restart ? m->restart : "permanent";
  if (w->args.len) {
    cn_put_term(&args, cn_buf_term(&w->args));
  } else if (m->args) {
    cn_parse_error pe;
    if (cn_term_parse(&args, m->args, strlen(m->args), &pe) != 0) {
      cn_log(CN_LOG_ERROR, "cnode", "%s: its default args '%s': %s at %zu",
             w->path, m->args, pe.what, pe.offset);
      return CN_EINVAL;
    }
  } else {
    cn_build(&args, "[]");
  }
  rc = cn_build(&spec,
                "{start_child, #{id => ~a, start => {~a, start_link, [{local, "
                "~a}, ~t]}, restart => ~a, shutdown => ~i, type => worker, "
                "modules => [~a]}}",
                name, m->name, name, cn_buf_term(&args), restart,
                (int64_t)(w->shutdown >= 0 ? w->shutdown
                          : m->shutdown_ms ? m->shutdown_ms
                                           : 5000),
                m->name);
  if (rc == 0)
    rc = cn_call(rt, cn_to_name(sup), cn_buf_term(&spec), 60000, &reply);
  if (rc == 0 && cn_match(cn_buf_term(&reply), "{ok, _}") != 0)
    rc = CN_EEXIT;
  if (rc != 0) {
    if (reply.len)
      cn_term_print(cn_buf_term(&reply), &text);
    cn_log(CN_LOG_ERROR, "cnode", "cannot start %s (module %s, %s): %s %s",
           name, m->name, w->path, cn_strerror(rc), text.data ? text.data : "");
  } else {
    cn_log(CN_LOG_INFO, "cnode", "started %s: module %s version %s from %s",
           name, m->name, m->vsn, w->path);
  }
  cn_buf_free(&spec);
  cn_buf_free(&args);
  cn_buf_free(&reply);
  cn_buf_free(&text);
  return rc;
}

/* ---- cnode_code ------------------------------------------------------- */

static int code_load(cn_runtime *rt, cn_term path_t, cn_buf *reply) {
  char path[4096], why[512];
  const char *bin;
  size_t n;
  version *v;
  cn_iter it;
  cn_term e;

  /* A charlist ("path", as Erlang strings go) or a binary. */
  if (cn_get_binary(path_t, &bin, &n) == 0 && n < sizeof path) {
    memcpy(path, bin, n);
  } else if (cn_iter_init(&it, path_t, NULL) == 0 &&
             cn_term_typeof(path_t) == CN_T_LIST) {
    int64_t c;
    for (n = 0; n + 1 < sizeof path && cn_iter_next(&it, &e); n++) {
      if (cn_get_int64(e, &c) != 0 || c < 1 || c > 255)
        return cn_build(reply, "{error, badarg}");
      path[n] = (char)c;
    }
  } else {
    return cn_build(reply, "{error, badarg}");
  }
  path[n] = '\0';
  if (load(rt, path, true, &v, why, sizeof why) != 0) {
    cn_log(CN_LOG_WARNING, "cnode", "cnode_code: cannot load %s", why);
    return cn_build(reply, "{error, {load_failed, ~s}}", why);
  }
  cn_log(CN_LOG_INFO, "cnode", "cnode_code: loaded %s version %s from %s",
         v->m->name, v->m->vsn, path);
  return cn_build(reply, "{ok, ~a, ~c}", v->m->name, v->m->vsn);
}

static int code_which(cn_runtime *rt, cn_buf *reply) {
  size_t n = 0;
  version *v;
  int rc;

  pthread_mutex_lock(&versions_mu);
  for (v = versions; v; v = v->next)
    n++;
  rc = cn_put_list(reply, (uint32_t)n);
  for (v = versions; v && rc == 0; v = v->next)
    rc = cn_build(reply, "{~a, ~c, ~a, ~u}", v->m->name, v->m->vsn,
                  newest(v->m->name) == v ? "current" : "old",
                  (uint64_t)cn_server_users(rt, v->m->ops));
  if (rc == 0)
    rc = cn_put_nil(reply);
  pthread_mutex_unlock(&versions_mu);
  return rc;
}

static int code_purge(cn_runtime *rt, const char *module, cn_buf *reply) {
  version **pv, *v, *cur;
  uint64_t purged = 0;

  pthread_mutex_lock(&versions_mu);
  cur = newest(module);
  for (pv = &versions; cur && (v = *pv);) {
    if (v != cur && strcmp(v->m->name, module) == 0 &&
        cn_server_users(rt, v->m->ops) == 0) {
      *pv = v->next;
      cn_log(CN_LOG_INFO, "cnode", "cnode_code: purged %s version %s",
             v->m->name, v->m->vsn);
      dlclose(v->dl);
      free(v->path);
      free(v);
      purged++;
    } else {
      pv = &v->next;
    }
  }
  pthread_mutex_unlock(&versions_mu);
  return cur ? cn_build(reply, "{ok, ~u}", purged)
             : cn_build(reply, "{error, not_loaded}");
}

static int code_call(cn_proc *self, void *state, cn_term req, cn_from *from,
                     cn_buf *reply) {
  cn_runtime *rt = cn_proc_runtime(self);
  char module[1024];
  cn_term t;

  (void)state;
  (void)from;
  if (cn_match(req, "{load, ~t}", &t) == 0)
    code_load(rt, t, reply);
  else if (cn_match(req, "which_modules") == 0)
    code_which(rt, reply);
  else if (cn_match(req, "{purge, ~a}", module, sizeof module) == 0)
    code_purge(rt, module, reply);
  else
    cn_build(reply, "{error, unknown_call}");
  return CN_REPLY; /* a build that ran out of memory is the runtime's */
}

static int code_format_state(cn_proc *self, void *state, cn_buf *out) {
  (void)state;
  return code_which(cn_proc_runtime(self), out);
}

static const cn_server_ops code_ops = {
    .name = "cnode_code",
    .handle_call = code_call,
    .format_state = code_format_state,
};

int modules_start(cn_runtime *rt, const char *sup) {
  cn_start_options o = {.name = CODE_NAME};
  wanted *w;
  cn_pid pid;
  int rc;

  for (w = wanted_head; w; w = w->next)
    if ((rc = start_one(rt, sup, w)) != 0)
      return rc;
  if ((rc = cn_start(rt, &code_ops, NULL, &o, &pid)) != 0)
    cn_log(CN_LOG_ERROR, "cnode", "cannot start " CODE_NAME ": %s",
           cn_strerror(rc));
  return rc;
}

/* ---- The --config file ------------------------------------------------- */

/* Node settings the file may give, as the flags they stand for. */
/* clang-format off */
static const char *const config_flags[] = {
    "sname",          "name",            "cookie_file",
    "listen",         "port",            "schedulers",
    "hidden",         "published",       "handshake_ms",
    "ticktime",       "max_handshakes",  "max_message",
    "max_mailbox",    "busy_limit",      "coalesce_max_us",
    "start_epmd",     "epmd_port",       "log_level",
    "stdin_eof",      "no_dist",         "proto_dist",
    "ssl_dist_optfile", NULL};
/* clang-format on */

static int push_arg(char ***args, int *n, const char *s, size_t len) {
  char **a = realloc(*args, (size_t)(*n + 1) * sizeof *a);
  if (!a)
    return -1;
  *args = a;
  if (!(a[*n] = strndup(s, len)))
    return -1;
  ++*n;
  return 0;
}

/* A value as flag text: an integer, atom, string or binary. */
static int value_text(cn_term v, char *out, size_t cap) {
  const char *bin;
  int64_t i;
  size_t n;
  if (cn_get_int64(v, &i) == 0)
    return snprintf(out, cap, "%lld", (long long)i) < (int)cap ? 0 : -1;
  if (cn_get_atom(v, out, cap) == 0)
    return 0;
  if (cn_get_binary(v, &bin, &n) == 0 && n < cap && !memchr(bin, 0, n)) {
    memcpy(out, bin, n);
    out[n] = '\0';
    return 0;
  }
  if (cn_term_typeof(v) == CN_T_LIST) {
    cn_iter it;
    cn_term e;
    int64_t c;
    cn_iter_init(&it, v, NULL);
    for (n = 0; cn_iter_next(&it, &e); n++)
      if (n + 1 >= cap || cn_get_int64(e, &c) != 0 || c < 1 || c > 255)
        return -1;
      else
        out[n] = (char)c;
    out[n] = '\0';
    return 0;
  }
  return -1;
}

static int config_node(const char *file, cn_term opts, char ***args,
                       int *nargs) {
  cn_iter it;
  cn_term e, v;
  char key[64], flag[80], val[4096];
  size_t i;

  if (cn_iter_init(&it, opts, NULL) != 0 || cn_term_typeof(opts) != CN_T_LIST) {
    fprintf(stderr, "cnode: %s: node wants a list of {Key, Value}\n", file);
    return -1;
  }
  while (cn_iter_next(&it, &e)) {
    if (cn_match(e, "{~a, ~t}", key, sizeof key, &v) != 0) {
      fprintf(stderr, "cnode: %s: node: not a {Key, Value}\n", file);
      return -1;
    }
    for (i = 0; config_flags[i] && strcmp(config_flags[i], key) != 0; i++)
      ;
    if (!config_flags[i] || value_text(v, val, sizeof val) != 0) {
      fprintf(stderr, "cnode: %s: node: %s '%s'\n", file,
              config_flags[i] ? "a bad value for" : "no setting", key);
      return -1;
    }
    snprintf(flag, sizeof flag, "--%s", key);
    for (i = 2; flag[i]; i++)
      if (flag[i] == '_')
        flag[i] = '-';
    if (strcmp(val, "false") == 0 && strcmp(key, "start_epmd") != 0)
      continue; /* a flag turned off */
    if (push_arg(args, nargs, flag, strlen(flag)) != 0 ||
        (strcmp(val, "true") != 0 || strcmp(key, "start_epmd") == 0
             ? push_arg(args, nargs, val, strlen(val))
             : 0) != 0) {
      fprintf(stderr, "cnode: out of memory\n");
      return -1;
    }
  }
  return 0;
}

static int config_modules(const char *file, cn_term mods) {
  cn_iter it;
  cn_term e, opts, v;
  char path[4096], atom[1024];
  int64_t ms;

  if (cn_iter_init(&it, mods, NULL) != 0 || cn_term_typeof(mods) != CN_T_LIST) {
    fprintf(stderr, "cnode: %s: modules wants a list\n", file);
    return -1;
  }
  while (cn_iter_next(&it, &e)) {
    cn_iter oi;
    cn_term o;
    wanted *w;
    if (cn_match(e, "{~t, ~t}", &v, &opts) != 0) {
      v = e;
      opts.ptr = NULL;
    }
    if (value_text(v, path, sizeof path) != 0 || !(w = wanted_new(path))) {
      fprintf(stderr, "cnode: %s: modules: a bad path\n", file);
      return -1;
    }
    if (!opts.ptr)
      continue;
    if (cn_iter_init(&oi, opts, NULL) != 0) {
      fprintf(stderr, "cnode: %s: %s: options want a list\n", file, path);
      return -1;
    }
    while (cn_iter_next(&oi, &o)) {
      if (cn_match(o, "{name, ~a}", atom, sizeof atom) == 0) {
        w->name = strdup(atom);
      } else if (cn_match(o, "{args, ~t}", &v) == 0) {
        cn_put_term(&w->args, v);
      } else if (cn_match(o, "{restart, ~a}", atom, sizeof atom) == 0 &&
                 (!strcmp(atom, "permanent") || !strcmp(atom, "transient") ||
                  !strcmp(atom, "temporary"))) {
        w->restart = strdup(atom);
      } else if (cn_match(o, "{shutdown, ~i}", &ms) == 0 && ms >= 0 &&
                 ms <= INT32_MAX) {
        w->shutdown = (long)ms;
      } else {
        char shown[256];
        cn_buf t = CN_BUF_INIT;
        cn_term_print(o, &t);
        snprintf(shown, sizeof shown, "%s", t.data ? t.data : "?");
        cn_buf_free(&t);
        fprintf(stderr, "cnode: %s: %s: a bad option %s\n", file, path, shown);
        return -1;
      }
    }
  }
  return 0;
}

int config_read(const char *path, char ***args, int *nargs) {
  cn_buf text = CN_BUF_INIT, term = CN_BUF_INIT;
  cn_parse_error pe = {0, NULL};
  char buf[65536], key[64];
  cn_iter it;
  cn_term e, v;
  ssize_t n;
  int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

  if (fd < 0) {
    fprintf(stderr, "cnode: --config %s: %s\n", path, strerror(errno));
    return -1;
  }
  while ((n = read(fd, buf, sizeof buf)) > 0 && text.len < (1u << 24))
    cn_buf_append(&text, buf, (size_t)n);
  close(fd);
  if (n < 0 || text.err) {
    fprintf(stderr, "cnode: --config %s: cannot read it\n", path);
    goto out;
  }
  if (cn_term_parse(&term, text.data ? text.data : "", text.len, &pe) != 0) {
    fprintf(stderr, "cnode: --config %s: %s at byte %zu\n", path,
            pe.what ? pe.what : "out of memory", pe.offset);
    goto out;
  }
  if (cn_term_typeof(cn_buf_term(&term)) != CN_T_LIST ||
      cn_iter_init(&it, cn_buf_term(&term), NULL) != 0) {
    fprintf(stderr,
            "cnode: --config %s: wants a list: [{node, [...]}, "
            "{modules, [...]}]\n",
            path);
    goto out;
  }
  while (cn_iter_next(&it, &e)) {
    if (cn_match(e, "{~a, ~t}", key, sizeof key, &v) != 0 ||
        (strcmp(key, "node") != 0 && strcmp(key, "modules") != 0)) {
      fprintf(stderr,
              "cnode: --config %s: wants {node, [...]} and "
              "{modules, [...]} only\n",
              path);
      goto out;
    }
    if (strcmp(key, "node") == 0 ? config_node(path, v, args, nargs)
                                 : config_modules(path, v))
      goto out;
  }
  rc = 0;
out:
  cn_buf_free(&text);
  cn_buf_free(&term);
  return rc;
}
