/* cnode: shared definitions for every public header.
 *
 * Errors come back by value: 0 means success, a negative CN_E* code means
 * failure.  One X-macro table drives both the codes and cn_strerror().
 */
#ifndef CNODE_COMMON_H
#define CNODE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CN_EXTERN __attribute__((visibility("default")))
#else
#define CN_EXTERN
#endif

/* The version of these headers.  Before 1.0 a minor version may change
 * the API and the ABI (the soname is libcnode.so.0.MINOR); from 1.0 on
 * only a major version may.  cn_version() gives the library's own, to
 * check a program against the library it runs with. */
#define CN_VERSION_MAJOR 0
#define CN_VERSION_MINOR 2
#define CN_VERSION_PATCH 0
#define CN_VERSION_HEX                                                         \
  ((CN_VERSION_MAJOR << 16) | (CN_VERSION_MINOR << 8) | CN_VERSION_PATCH)

/* XX(name, message).  Codes are numbered from -1 downwards in table order,
 * so new codes go at the end. */
#define CN_ERRNO_MAP(XX)                                                       \
  XX(EINVAL, "invalid argument")                                               \
  XX(ENOMEM, "out of memory")                                                  \
  XX(EBADTERM, "malformed term")                                               \
  XX(ETOODEEP, "term nested too deeply")                                       \
  XX(ETOOBIG, "term or message over its size limit")                           \
  XX(ENOMATCH, "term does not match the pattern")                              \
  XX(EBADFMT, "malformed format or pattern string")                            \
  XX(ENOSPC, "buffer too small")                                               \
  XX(ENOTSUP, "not supported")                                                 \
  XX(ENOPROC, "no such process")                                               \
  XX(ETIMEDOUT, "timed out")                                                   \
  XX(EDEADLK, "call would deadlock")                                           \
  XX(EEXIT, "process exited")                                                  \
  XX(ENOCONN, "no connection to node")                                         \
  XX(EEXIST, "already exists")                                                 \
  XX(ENOENT, "not found")                                                      \
  XX(ESHUTDOWN, "runtime is shutting down")                                    \
  XX(ELIMIT, "resource limit reached")                                         \
  XX(EIGNORE, "init returned ignore")                                          \
  XX(ENOTSELF, "not called from inside a process")                             \
  XX(ESYSTEM, "system call failed")                                            \
  XX(EAUTH, "authentication failed (wrong cookie)")                            \
  XX(EPROTO, "distribution protocol error")                                    \
  XX(EFULL, "mailbox full (max_mailbox)")                                      \
  XX(EBUSY, "connection busy (output over its busy limit)")

enum cn_errno_enum_ {
  CN_OK = 0,
  CN_ERR_BASE_ = 0,
#define CN_ERRNO_ENUM_(name, msg) CN_ERR_##name##_IDX_,
  CN_ERRNO_MAP(CN_ERRNO_ENUM_)
#undef CN_ERRNO_ENUM_
      CN_ERR_COUNT_
};

#define CN_ERRNO_DEF_(name, msg) CN_##name = -(CN_ERR_##name##_IDX_),
enum cn_errno { CN_ERRNO_MAP(CN_ERRNO_DEF_) };
#undef CN_ERRNO_DEF_

/* The library's version as CN_VERSION_HEX makes it ((major << 16) |
 * (minor << 8) | patch): what the program runs with, which may differ
 * from the headers it was built with.  Thread-safe. */
CN_EXTERN unsigned cn_version(void);

/* The same as text, "MAJOR.MINOR.PATCH" (static storage). */
CN_EXTERN const char *cn_version_string(void);

/* Returns a static, human-readable message for an error code (0 gives
 * "ok"; an unknown code gives "unknown error").  Thread-safe. */
CN_EXTERN const char *cn_strerror(int err);

/* Returns the symbolic name of an error code, such as "CN_ENOPROC", or
 * "CN_OK" for 0 and "CN_UNKNOWN" otherwise.  Thread-safe. */
CN_EXTERN const char *cn_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* CNODE_COMMON_H */
