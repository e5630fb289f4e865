/* Error codes and their messages, generated from CN_ERRNO_MAP. */
#include <cnode/common.h>

const char *cn_strerror(int err) {
  switch (err) {
  case 0:
    return "ok";
#define CN_STRERROR_CASE_(name, msg)                                           \
  case CN_##name:                                                              \
    return msg;
    CN_ERRNO_MAP(CN_STRERROR_CASE_)
#undef CN_STRERROR_CASE_
  default:
    return "unknown error";
  }
}

const char *cn_err_name(int err) {
  switch (err) {
  case 0:
    return "CN_OK";
#define CN_ERRNAME_CASE_(name, msg)                                            \
  case CN_##name:                                                              \
    return "CN_" #name;
    CN_ERRNO_MAP(CN_ERRNAME_CASE_)
#undef CN_ERRNAME_CASE_
  default:
    return "CN_UNKNOWN";
  }
}

#define CN_STR_(x) #x
#define CN_STR(x) CN_STR_(x)

unsigned cn_version(void) { return CN_VERSION_HEX; }

const char *cn_version_string(void) {
  return CN_STR(CN_VERSION_MAJOR) "." CN_STR(CN_VERSION_MINOR) "." CN_STR(
      CN_VERSION_PATCH);
}
