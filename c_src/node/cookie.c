/* The cookie file, read and created as kernel's auth.erl (OTP 25) does:
 * read_cookie/0, read_cookie/1, check_attributes/4, check_cookie/2 and
 * create_cookie/1.  See cnode/node.h. */
#include <cnode.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A cookie file is a few bytes; anything much longer is not one, and is
 * refused before it is read into memory. */
#define FILE_MAX 4096

/* read_cookie's answer besides the errors: the file is not there. */
#define MISSING 1

/* Sets c->error and returns err. */
static int fail(cn_cookie *c, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->error, sizeof(c->error), fmt, ap);
  va_end(ap);
  return err;
}

/* check_cookie/2: the cookie is the leading run of printable ASCII
 * (space to tilde); after it only newlines, carriage returns and spaces
 * may follow, and those are dropped.  Note that spaces inside the run,
 * trailing ones included, belong to the cookie, as they do for erl. */
static int parse(cn_cookie *c, const char *buf, size_t n) {
  size_t len = 0, i;

  while (len < n && buf[len] >= ' ' && buf[len] <= '~')
    len++;
  for (i = len; i < n; i++) {
    if (buf[i] != '\n' && buf[i] != '\r' && buf[i] != ' ')
      return fail(c, CN_EINVAL, "bad characters in cookie file %s", c->path);
  }
  if (len == 0)
    return fail(c, CN_EINVAL, "cookie file %s holds no cookie", c->path);
  if (len > CN_COOKIE_MAX)
    return fail(c, CN_EINVAL, "the cookie in %s is longer than %d bytes",
                c->path, CN_COOKIE_MAX);
  memcpy(c->value, buf, len);
  c->value[len] = '\0';
  return 0;
}

/* read_cookie/1 on c->path: 0 with the cookie, MISSING when the file does
 * not exist, an error otherwise.  The checks run on the open descriptor,
 * so the file checked is the file read.  O_NONBLOCK keeps a FIFO planted
 * at the path from hanging the node; fstat then refuses it. */
static int read_cookie(cn_cookie *c) {
  char buf[FILE_MAX];
  struct stat st;
  size_t n = 0;
  ssize_t r;
  int fd = open(c->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

  if (fd < 0) {
    if (errno == ENOENT)
      return MISSING;
    return fail(c, CN_ESYSTEM, "cannot read cookie file %s: %s", c->path,
                strerror(errno));
  }
  if (fstat(fd, &st) != 0) {
    fail(c, CN_ESYSTEM, "cannot read cookie file %s: %s", c->path,
         strerror(errno));
    close(fd);
    return CN_ESYSTEM;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return fail(c, CN_EINVAL, "cookie file %s is not a regular file", c->path);
  }
  /* check_attributes/4: erl refuses to start with such a file, because
   * whoever can read the cookie can run code on every node of the
   * cluster.  So does the library, with erl's words. */
  if (st.st_mode & 077) {
    close(fd);
    return fail(c, CN_EINVAL,
                "cookie file %s must be accessible by owner only "
                "(chmod 400 %s)",
                c->path, c->path);
  }
  while (n < sizeof(buf)) {
    r = read(fd, buf + n, sizeof(buf) - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      fail(c, CN_ESYSTEM, "cannot read cookie file %s: %s", c->path,
           strerror(errno));
      close(fd);
      return CN_ESYSTEM;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  if (n == sizeof(buf))
    return fail(c, CN_EINVAL, "cookie file %s is too long", c->path);
  return parse(c, buf, n);
}

/* Fills out[0..n) with letters A-Z drawn uniformly from the OpenSSL
 * generator.  A byte is used only below 234 (9 * 26), so that every letter
 * is equally likely.  Returns 0, or -1 when the generator fails. */
static int random_letters(char *out, size_t n) {
  unsigned char bytes[64];
  size_t got = 0, i;

  while (got < n) {
    if (RAND_bytes(bytes, (int)sizeof(bytes)) != 1)
      return -1;
    for (i = 0; i < sizeof(bytes) && got < n; i++) {
      if (bytes[i] < 234)
        out[got++] = (char)('A' + bytes[i] % 26);
    }
  }
  return 0;
}

/* create_cookie/1: a new file of 20 letters (no newline, as erl writes
 * it), mode 0400.  O_EXCL makes the creation atomic: when another process
 * (an erl starting at the same moment, say) wins the race, its file is
 * the one to read, and MISSING sends the caller back to reading.  A file
 * that could not be written whole is removed, so that the next start does
 * not find a broken cookie. */
static int create_cookie(cn_cookie *c) {
  char letters[CN_COOKIE_NEW_LEN];
  size_t n = 0;
  ssize_t r;
  int fd, e = 0;

  if (random_letters(letters, sizeof(letters)) != 0)
    return fail(c, CN_ESYSTEM, "cannot make a cookie: RAND_bytes failed");
  fd =
      open(c->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
  if (fd < 0) {
    if (errno == EEXIST)
      return MISSING;
    return fail(c, CN_ESYSTEM, "cannot create cookie file %s: %s", c->path,
                strerror(errno));
  }
  while (n < sizeof(letters)) {
    r = write(fd, letters + n, sizeof(letters) - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      e = r < 0 ? errno : EIO;
      break;
    }
    n += (size_t)r;
  }
  /* The umask can only take bits away from 0400; fchmod restores it
   * exactly, as auth.erl's write_file_info does. */
  if (n == sizeof(letters) && fchmod(fd, 0400) != 0)
    e = errno;
  if (close(fd) != 0 && e == 0)
    e = errno;
  if (e != 0) {
    unlink(c->path);
    return fail(c, CN_ESYSTEM, "cannot write cookie file %s: %s", c->path,
                strerror(e));
  }
  return 0;
}

/* Joins dir and name into out (CN_COOKIE_PATH_MAX bytes); -1 when it does
 * not fit. */
static int join(char *out, const char *dir, const char *name) {
  int n = snprintf(out, CN_COOKIE_PATH_MAX, "%s/%s", dir, name);
  return n < 0 || n >= CN_COOKIE_PATH_MAX ? -1 : 0;
}

/* The cookie at c->path, creating the file when it is missing. */
static int read_or_create(cn_cookie *c) {
  int i, rc;

  /* Two rounds are enough: if our create loses a race, the winner's file
   * is there to read on the second. */
  for (i = 0; i < 2; i++) {
    if ((rc = read_cookie(c)) != MISSING)
      return rc;
    if ((rc = create_cookie(c)) < 0)
      return rc;
    if (rc == 0)
      c->created = true;
  }
  rc = read_cookie(c);
  if (rc == MISSING)
    return fail(c, CN_ESYSTEM, "cookie file %s vanished as it was made",
                c->path);
  return rc;
}

static void clear(cn_cookie *c) {
  c->value[0] = '\0';
  c->path[0] = '\0';
  c->error[0] = '\0';
  c->created = false;
}

int cn_cookie_read(const char *path, cn_cookie *c) {
  int rc;
  if (!c)
    return CN_EINVAL;
  clear(c);
  if (!path || !*path)
    return fail(c, CN_EINVAL, "no cookie file named");
  if (strlen(path) >= sizeof(c->path))
    return fail(c, CN_EINVAL, "the cookie file's path is too long");
  memcpy(c->path, path, strlen(path) + 1);
  rc = read_cookie(c);
  if (rc == MISSING)
    return fail(c, CN_ENOENT, "no cookie file %s", c->path);
  return rc;
}

int cn_cookie_load(cn_cookie *c) {
  const char *home, *xdg;
  char xdg_path[CN_COOKIE_PATH_MAX];
  bool have_home, have_xdg = false;
  int rc;

  if (!c)
    return CN_EINVAL;
  clear(c);
  home = getenv("HOME");
  xdg = getenv("XDG_CONFIG_HOME");
  have_home = home && *home;
  /* filename:basedir(user_config, "erlang") on Linux. */
  if (xdg && *xdg)
    have_xdg = join(xdg_path, xdg, "erlang/.erlang.cookie") == 0;
  else if (have_home)
    have_xdg = join(xdg_path, home, ".config/erlang/.erlang.cookie") == 0;
  if (have_home && join(c->path, home, ".erlang.cookie") != 0) {
    c->path[0] = '\0';
    return fail(c, CN_EINVAL, "$HOME is too long for a path");
  }

  if (!have_home && !have_xdg)
    return fail(c, CN_ENOENT,
                "neither $HOME nor $XDG_CONFIG_HOME is set, so there is no "
                "cookie file: give the cookie");
  if (!have_home) {
    memcpy(c->path, xdg_path, sizeof(xdg_path));
    return read_or_create(c);
  }
  rc = read_cookie(c);
  if (rc != MISSING)
    return rc;
  if (have_xdg) {
    char home_path[CN_COOKIE_PATH_MAX];
    memcpy(home_path, c->path, sizeof(home_path));
    memcpy(c->path, xdg_path, sizeof(xdg_path));
    rc = read_cookie(c);
    if (rc != MISSING)
      return rc;
    memcpy(c->path, home_path, sizeof(home_path));
  }
  return read_or_create(c);
}
