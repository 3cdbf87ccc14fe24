// sd_pid_notify_with_fds(3) for node: a notify message to systemd with file descriptors attached
// (SCM_RIGHTS), which the `sd-notify` module cannot send. Used for FDSTORE=1 (systemd's file-descriptor
// store): the socket connections the daemon holds survive its restart.
//
//   notify(state: string, fds?: number[]): number
//
// Returns what libsystemd returns: > 0 sent, 0 when $NOTIFY_SOCKET is not set, < 0 a negative errno.
// Throws only on bad arguments.
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

// The kernel passes at most 253 descriptors in one SCM_RIGHTS message (SCM_MAX_FD).
#define MAX_FDS 253
// A notify message is a few short assignments; anything longer is a caller's mistake.
#define MAX_STATE 4096

static napi_value fail(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value Notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1)
    return fail(env, "notify(state, fds?) needs a state string");
  napi_valuetype type;
  napi_typeof(env, argv[0], &type);
  if (type != napi_string) return fail(env, "state must be a string");
  size_t len = 0;
  napi_get_value_string_utf8(env, argv[0], NULL, 0, &len);
  if (len == 0 || len > MAX_STATE) return fail(env, "state is empty or too long");
  char state[MAX_STATE + 1];
  napi_get_value_string_utf8(env, argv[0], state, sizeof state, &len);
  if (strlen(state) != len) return fail(env, "state holds a NUL byte");

  int fds[MAX_FDS];
  uint32_t n = 0;
  if (argc >= 2) {
    napi_typeof(env, argv[1], &type);
    if (type != napi_undefined) {
      bool is_array = false;
      napi_is_array(env, argv[1], &is_array);
      if (!is_array) return fail(env, "fds must be an array");
      napi_get_array_length(env, argv[1], &n);
      if (n > MAX_FDS) return fail(env, "too many fds");
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        int32_t fd = -1;
        napi_get_element(env, argv[1], i, &v);
        if (napi_get_value_int32(env, v, &fd) != napi_ok || fd < 0)
          return fail(env, "fds must be non-negative integers");
        fds[i] = fd;
      }
    }
  }
  // pid 0: this process (NotifyAccess=main); unset_environment 0: later messages still need $NOTIFY_SOCKET.
  int r = sd_pid_notify_with_fds(0, 0, state, n > 0 ? fds : NULL, n);
  napi_value result;
  napi_create_int32(env, r, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, Notify, NULL, &fn);
  napi_set_named_property(env, exports, "notify", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
