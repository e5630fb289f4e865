/* cnode: reading and creating the cookie file, after kernel's auth.erl
 * (OTP 25): read_cookie/0, read_cookie/1, check_attributes/4,
 * check_cookie/2 and create_cookie/1.  See cookie.h. */
#include "cookie.h"

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

enum { FOUND = 0, MISSING = 1, FAILED = -1 };

static int fail(char *err, size_t errcap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
  return FAILED;
}

/* check_cookie/2: the cookie is the leading run of printable ASCII
 * (space to tilde); after it only newlines, carriage returns and spaces
 * may follow, and those are dropped.  Note that spaces inside the run,
 * trailing ones included, belong to the cookie, as they do for erl. */
static int parse(const char *path, const char *buf, size_t n, char *cookie,
                 char *err, size_t errcap) {
  size_t len = 0, i;

  while (len < n && buf[len] >= ' ' && buf[len] <= '~')
    len++;
  for (i = len; i < n; i++) {
    if (buf[i] != '\n' && buf[i] != '\r' && buf[i] != ' ')
      return fail(err, errcap, "bad characters in cookie file %s", path);
  }
  if (len == 0)
    return fail(err, errcap, "cookie file %s holds no cookie", path);
  if (len > COOKIE_MAX)
    return fail(err, errcap, "the cookie in %s is longer than %d bytes", path,
                COOKIE_MAX);
  memcpy(cookie, buf, len);
  cookie[len] = '\0';
  return FOUND;
}

/* read_cookie/1: FOUND with the cookie, MISSING when the file does not
 * exist, FAILED otherwise.  The checks run on the open descriptor, so the
 * file checked is the file read.  O_NONBLOCK keeps a FIFO planted at the
 * path from hanging the node; fstat then refuses it. */
static int read_cookie(const char *path, char *cookie, char *err,
                       size_t errcap) {
  char buf[FILE_MAX];
  struct stat st;
  size_t n = 0;
  ssize_t r;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

  if (fd < 0) {
    if (errno == ENOENT)
      return MISSING;
    return fail(err, errcap, "cannot read cookie file %s: %s", path,
                strerror(errno));
  }
  if (fstat(fd, &st) != 0) {
    fail(err, errcap, "cannot read cookie file %s: %s", path, strerror(errno));
    close(fd);
    return FAILED;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return fail(err, errcap, "cookie file %s is not a regular file", path);
  }
  /* check_attributes/4: erl refuses to start with such a file, because
   * whoever can read the cookie can run code on every node of the
   * cluster.  So does this program, with erl's words. */
  if (st.st_mode & 077) {
    close(fd);
    return fail(err, errcap,
                "cookie file %s must be accessible by owner only "
                "(chmod 400 %s)",
                path, path);
  }
  while (n < sizeof(buf)) {
    r = read(fd, buf + n, sizeof(buf) - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      fail(err, errcap, "cannot read cookie file %s: %s", path,
           strerror(errno));
      close(fd);
      return FAILED;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  if (n == sizeof(buf))
    return fail(err, errcap, "cookie file %s is too long", path);
  return parse(path, buf, n, cookie, err, errcap);
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
static int create_cookie(const char *path, char *err, size_t errcap) {
  char letters[COOKIE_NEW_LEN];
  size_t n = 0;
  ssize_t r;
  int fd, e = 0;

  if (random_letters(letters, sizeof(letters)) != 0)
    return fail(err, errcap, "cannot make a cookie: RAND_bytes failed");
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400);
  if (fd < 0) {
    if (errno == EEXIST)
      return MISSING;
    return fail(err, errcap, "cannot create cookie file %s: %s", path,
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
    unlink(path);
    return fail(err, errcap, "cannot write cookie file %s: %s", path,
                strerror(e));
  }
  return FOUND;
}

/* Joins dir and name into out; -1 when it does not fit. */
static int join(char *out, size_t cap, const char *dir, const char *name) {
  int n = snprintf(out, cap, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The cookie at path, creating the file when it is missing. */
static int read_or_create(const char *path, char *cookie, char *err,
                          size_t errcap, bool *created) {
  int i, rc;

  /* Two rounds are enough: if our create loses a race, the winner's file
   * is there to read on the second. */
  for (i = 0; i < 2; i++) {
    if ((rc = read_cookie(path, cookie, err, errcap)) != MISSING)
      return rc;
    if ((rc = create_cookie(path, err, errcap)) == FAILED)
      return rc;
    if (rc == FOUND)
      *created = true;
  }
  rc = read_cookie(path, cookie, err, errcap);
  if (rc == MISSING)
    return fail(err, errcap, "cookie file %s vanished as it was made", path);
  return rc;
}

int cookie_load(char *cookie, char *err, size_t errcap, bool *created,
                char *path, size_t pathcap) {
  const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
  char home_path[4096], xdg_path[4096];
  bool have_home = home && *home, have_xdg = false;
  int rc;

  *created = false;
  /* filename:basedir(user_config, "erlang") on Linux. */
  if (xdg && *xdg)
    have_xdg =
        join(xdg_path, sizeof(xdg_path), xdg, "erlang/.erlang.cookie") == 0;
  else if (have_home)
    have_xdg = join(xdg_path, sizeof(xdg_path), home,
                    ".config/erlang/.erlang.cookie") == 0;
  if (have_home &&
      join(home_path, sizeof(home_path), home, ".erlang.cookie") != 0)
    return fail(err, errcap, "$HOME is too long for a path");

  if (!have_home && !have_xdg)
    return fail(err, errcap,
                "neither $HOME nor $XDG_CONFIG_HOME is set, so there is no "
                "cookie file: pass --cookie");
  if (!have_home) {
    snprintf(path, pathcap, "%s", xdg_path);
    return read_or_create(xdg_path, cookie, err, errcap, created);
  }
  snprintf(path, pathcap, "%s", home_path);
  rc = read_cookie(home_path, cookie, err, errcap);
  if (rc != MISSING)
    return rc;
  if (have_xdg) {
    rc = read_cookie(xdg_path, cookie, err, errcap);
    if (rc != MISSING) {
      snprintf(path, pathcap, "%s", xdg_path);
      return rc;
    }
  }
  return read_or_create(home_path, cookie, err, errcap, created);
}
